//! Browsing an instance's files (list, read, write), built on `exec` so it works the same for
//! any backend and runs as the instance user, inside the instance's own limits.

use std::time::Duration;

use super::{ExecRequest, InstanceBackend, InstanceError};

/// Largest file read back in one call.
pub const READ_CAP: usize = 256 * 1024;
const FILE_TIMEOUT: Duration = Duration::from_secs(30);

/// Quotes a string for `sh` so that it is always one literal word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Resolves a path: relative paths are taken from `/workspace`.
pub fn resolve(path: &str) -> Result<String, InstanceError> {
    let path = path.trim();
    if path.contains('\0') {
        return Err(InstanceError::Failed("a path cannot contain NUL".into()));
    }
    if path.is_empty() || path == "." {
        return Ok("/workspace".into());
    }
    if path.starts_with('/') {
        Ok(path.to_string())
    } else {
        Ok(format!("/workspace/{path}"))
    }
}

async fn run(
    backend: &dyn InstanceBackend,
    instance: &str,
    command: String,
    stdin: Option<Vec<u8>>,
    cap: usize,
) -> Result<(String, usize), InstanceError> {
    let request = ExecRequest {
        command,
        env: Vec::new(),
        timeout: FILE_TIMEOUT,
        output_cap: cap,
        stdin,
        on_output: None,
    };
    let out = backend.exec(instance, request).await?;
    match out.exit_code {
        Some(0) => Ok((out.output, out.dropped)),
        _ => Err(InstanceError::Failed(out.output.trim().to_string())),
    }
}

/// One file found under `/workspace` by [`index`].
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedFile {
    pub path: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: i64,
}

/// Folders an index skips: tool caches and installs, not the user's work.
const SKIPPED: &[&str] = &[
    "node_modules",
    ".git",
    ".cache",
    ".npm",
    ".npm-global",
    ".local",
];

/// Every regular file under `/workspace` (skipping caches and installs), with its size and time,
/// in one exec; `find` and `stat` are the same in GNU and busybox.
pub async fn index(
    backend: &dyn InstanceBackend,
    instance: &str,
) -> Result<Vec<IndexedFile>, InstanceError> {
    let prune = SKIPPED
        .iter()
        .map(|d| format!("-name {}", shell_quote(d)))
        .collect::<Vec<_>>()
        .join(" -o ");
    let command = format!(
        "cd /workspace && find . \\( {prune} \\) -prune -o -type f -exec stat -c '%Y %s %n' {{}} + 2>/dev/null; true"
    );
    let (out, _) = run(backend, instance, command, None, 32 * 1024 * 1024).await?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let modified = parts.next()?.parse().ok()?;
            let size = parts.next()?.parse().ok()?;
            let path = parts.next()?.strip_prefix("./")?;
            Some(IndexedFile {
                path: format!("/workspace/{path}"),
                size,
                modified,
            })
        })
        .collect())
}

/// `ls -la` of a directory.
pub async fn list(
    backend: &dyn InstanceBackend,
    instance: &str,
    path: &str,
) -> Result<String, InstanceError> {
    let path = resolve(path)?;
    let (text, _) = run(
        backend,
        instance,
        format!("ls -la -- {} 2>&1", shell_quote(&path)),
        None,
        64 * 1024,
    )
    .await?;
    Ok(text)
}

/// One line of a directory listing, read from `ls -la`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedFile {
    pub name: String,
    /// `dir`, `file`, `link` or `other`.
    pub kind: &'static str,
    pub size: u64,
    /// As `ls` shows it, e.g. `Nov 29 17:08`.
    pub modified: String,
    /// Where a symbolic link points.
    pub target: Option<String>,
}

/// Reads `ls -la` output (GNU or busybox): permissions, links, owner, group, size, three date
/// words, then the name. `.` and `..`, the `total` line and lines of another shape are skipped.
pub fn parse_listing(text: &str) -> Vec<ListedFile> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ListedFile> {
    // The byte offset where each of the first nine words starts.
    let mut starts = Vec::with_capacity(9);
    let mut previous_blank = true;
    for (i, c) in line.char_indices() {
        if previous_blank && !c.is_whitespace() {
            starts.push(i);
            if starts.len() == 9 {
                break;
            }
        }
        previous_blank = c.is_whitespace();
    }
    if starts.len() < 9 {
        return None;
    }
    let word = |n: usize| line[starts[n]..].split_whitespace().next().unwrap_or("");
    let mode = word(0);
    if mode.len() < 10 {
        return None;
    }
    let size = word(4).parse().ok()?;
    let kind = match mode.as_bytes()[0] {
        b'd' => "dir",
        b'-' => "file",
        b'l' => "link",
        _ => "other",
    };
    let rest = &line[starts[8]..];
    let (name, target) = match (kind, rest.split_once(" -> ")) {
        ("link", Some((name, target))) => (name.to_string(), Some(target.to_string())),
        _ => (rest.to_string(), None),
    };
    if name == "." || name == ".." {
        return None;
    }
    Some(ListedFile {
        name,
        kind,
        size,
        modified: format!("{} {} {}", word(5), word(6), word(7)),
        target,
    })
}

/// A file's text, up to [`READ_CAP`] bytes; the second value says how many bytes were left out.
pub async fn read(
    backend: &dyn InstanceBackend,
    instance: &str,
    path: &str,
) -> Result<(String, usize), InstanceError> {
    let path = resolve(path)?;
    run(
        backend,
        instance,
        format!("cat -- {} 2>&1", shell_quote(&path)),
        None,
        READ_CAP,
    )
    .await
}

/// Writes a file, creating its directory.
pub async fn write(
    backend: &dyn InstanceBackend,
    instance: &str,
    path: &str,
    content: &[u8],
) -> Result<String, InstanceError> {
    let path = resolve(path)?;
    let quoted = shell_quote(&path);
    let command = format!("mkdir -p -- \"$(dirname -- {quoted})\" 2>&1 && cat > {quoted} 2>&1");
    run(backend, instance, command, Some(content.to_vec()), 4096).await?;
    Ok(path)
}

/// Reads a file as bytes (through base64, since command output is text). Fails, saying so, when
/// the file is larger than `cap` bytes. Returns the resolved path and the bytes.
pub async fn read_bytes(
    backend: &dyn InstanceBackend,
    instance: &str,
    path: &str,
    cap: usize,
) -> Result<(String, Vec<u8>), InstanceError> {
    use base64::Engine;
    let path = resolve(path)?;
    let quoted = shell_quote(&path);
    let command = format!(
        "size=$(wc -c < {quoted}) || exit 1; \
         if [ \"$size\" -gt {cap} ]; then echo \"the file is $size bytes; the limit is {cap}\"; exit 3; fi; \
         base64 {quoted} 2>&1"
    );
    let (out, dropped) = run(
        backend,
        instance,
        command,
        None,
        cap / 3 * 4 + cap / 38 + 4096,
    )
    .await?;
    if dropped > 0 {
        return Err(InstanceError::Failed(format!(
            "{path} grew while it was read"
        )));
    }
    let clean: String = out.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| InstanceError::Failed(format!("{path} could not be read whole: {e}")))?;
    Ok((path, bytes))
}

/// Writes a file only when it does not exist yet; returns whether it was written.
pub async fn write_new(
    backend: &dyn InstanceBackend,
    instance: &str,
    path: &str,
    content: &[u8],
) -> Result<bool, InstanceError> {
    let path = resolve(path)?;
    let quoted = shell_quote(&path);
    let command = format!(
        "if [ -e {quoted} ]; then echo exists; else cat > {quoted} 2>&1 && echo written; fi"
    );
    let (out, _) = run(backend, instance, command, Some(content.to_vec()), 4096).await?;
    Ok(out.trim() == "written")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_resolves() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(resolve("notes/x.md").unwrap(), "/workspace/notes/x.md");
        assert_eq!(resolve("/etc/hostname").unwrap(), "/etc/hostname");
        assert_eq!(resolve("").unwrap(), "/workspace");
        assert!(resolve("a\0b").is_err());
    }

    #[test]
    fn reads_gnu_and_busybox_listings() {
        let text = "total 12\n\
            drwxr-xr-x    3 1000     1000          4096 Nov 29 17:08 .\n\
            drwxr-xr-x    1 root     root          4096 Nov 29 17:00 ..\n\
            -rw-r--r--    1 1000     1000            12 Nov 29 17:08 my notes.md\n\
            drwxr-xr-x 2 root root 4096 Jan  3  2025 reports\n\
            lrwxrwxrwx 1 root root 7 Nov 29 17:08 latest -> reports\n\
            ls: cannot access 'x': No such file or directory\n";
        let files = parse_listing(text);
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(files[0].name, "my notes.md");
        assert_eq!((files[0].kind, files[0].size), ("file", 12));
        assert_eq!(files[0].modified, "Nov 29 17:08");
        assert_eq!((files[1].name.as_str(), files[1].kind), ("reports", "dir"));
        assert_eq!(files[1].modified, "Jan 3 2025");
        assert_eq!(files[2].name, "latest");
        assert_eq!(files[2].target.as_deref(), Some("reports"));
    }
}
