//! A minimal ustar writer for the few small entries the daemon uploads into a workspace (the
//! volume's root and a marker file), with a fixed owner. Not a general tar implementation.

const BLOCK: usize = 512;

/// One entry: a directory (`data: None`) or a small file.
pub struct Entry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: Option<&'a [u8]>,
}

/// Writes `value` as NUL-terminated octal filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// An archive of `entries`, all owned by `uid:gid`.
pub fn build(entries: &[Entry<'_>], uid: u32, gid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let data = entry.data.unwrap_or_default();
        let mut header = [0u8; BLOCK];
        let name = entry.path.as_bytes();
        header[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        octal(&mut header[100..108], u64::from(entry.mode));
        octal(&mut header[108..116], u64::from(uid));
        octal(&mut header[116..124], u64::from(gid));
        octal(&mut header[124..136], data.len() as u64);
        octal(&mut header[136..148], 0);
        header[156] = if entry.data.is_some() { b'0' } else { b'5' };
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field read as spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_tar_reads_what_we_write() {
        let archive = build(
            &[
                Entry {
                    path: "./",
                    mode: 0o755,
                    data: None,
                },
                Entry {
                    path: "./.operator",
                    mode: 0o644,
                    data: Some(b"hello\n"),
                },
            ],
            1000,
            1000,
        );
        assert_eq!(archive.len() % BLOCK, 0);
        let dir = std::env::temp_dir().join(format!("operator-tar-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.tar");
        std::fs::write(&path, &archive).unwrap();
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        assert!(
            text.contains("1000/1000") && text.contains("./.operator"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
