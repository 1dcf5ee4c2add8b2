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
    };
    let out = backend.exec(instance, request).await?;
    match out.exit_code {
        Some(0) => Ok((out.output, out.dropped)),
        _ => Err(InstanceError::Failed(out.output.trim().to_string())),
    }
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
}
