//! A small line diff for previews: what changes in a file if a new version is installed.

/// Lines removed (`-`) and added (`+`) between `old` and `new`, by longest common subsequence,
/// at most `limit` lines of output. Empty when they are equal.
pub fn line_diff(old: &str, new: &str, limit: usize) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Quadratic tables are fine for skill files (at most a few thousand lines); beyond that,
    // say the file changed as a whole.
    if a.len() * b.len() > 4_000_000 {
        return vec![format!(
            "~ {} lines -> {} lines (too large to diff)",
            a.len(),
            b.len()
        )];
    }
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while (i < a.len() || j < b.len()) && out.len() < limit {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}
