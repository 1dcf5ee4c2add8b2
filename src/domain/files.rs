//! Files people and agents exchange through chats.

/// The largest file that goes either way (Telegram's download limit for bots).
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;

/// A file name safe to put in a directory: no path, no control characters, not hidden.
pub fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let clean = clean.trim().trim_start_matches('.').to_string();
    if clean.is_empty() {
        "file".into()
    } else {
        clean.chars().take(120).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn names_lose_their_paths_and_dots() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("a\nb.txt"), "a_b.txt");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name("C:\\x\\report.pdf"), "report.pdf");
    }
}
