//! The master key and sealing: XChaCha20-Poly1305 with a random 24-byte nonce per value and the
//! secret's name as associated data, so a record moved to another name does not open.

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// The systemd credential that holds the key (`LoadCredential=operator-master-key:...`).
pub const CREDENTIAL: &str = "operator-master-key";
/// The key file in the state directory when there is no credential.
pub const KEY_FILE: &str = "master.key";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("master key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error(
        "secret {name} was sealed under another master key (key {stored}, current {current}); it stays locked"
    )]
    WrongKey {
        name: String,
        stored: String,
        current: String,
    },
    #[error(
        "secret {name} cannot be opened: the stored record was altered or is damaged; it stays locked"
    )]
    Tampered { name: String },
}

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Credential(PathBuf),
    File(PathBuf),
    Created(PathBuf),
}

pub struct MasterKey {
    key: [u8; 32],
    fingerprint: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, [redacted])", self.fingerprint)
    }
}

impl MasterKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"operator master key fingerprint\0");
        hash.update(key);
        let fingerprint = hex::encode(&hash.finalize()[..8]);
        Self { key, fingerprint }
    }

    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// A short public identifier of the key, stored with each record.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `$CREDENTIALS_DIRECTORY/operator-master-key` when present, else `master.key` in the state
    /// directory, created (mode 0600) when missing.
    pub fn load_or_create(state_dir: &Path) -> Result<(Self, KeySource), CipherError> {
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            let path = Path::new(&dir).join(CREDENTIAL);
            if path.is_file() {
                return Ok((Self::read(&path)?, KeySource::Credential(path)));
            }
        }
        let path = state_dir.join(KEY_FILE);
        if path.exists() {
            return Ok((Self::read(&path)?, KeySource::File(path)));
        }
        let key = Self::generate();
        key.write(&path)?;
        Ok((key, KeySource::Created(path)))
    }

    /// The key where [`MasterKey::load_or_create`] would find it, without creating one.
    pub fn load_existing(state_dir: &Path) -> Result<Option<(Self, PathBuf)>, CipherError> {
        let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(&d).join(CREDENTIAL))
            .filter(|p| p.is_file());
        let path = credential.unwrap_or_else(|| state_dir.join(KEY_FILE));
        if !path.is_file() {
            return Ok(None);
        }
        Ok(Some((Self::read(&path)?, path)))
    }

    /// Reads a key file: 64 hex characters (whitespace ignored) or 32 raw bytes.
    pub fn read(path: &Path) -> Result<Self, CipherError> {
        let err = |message: String| CipherError::Key {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot be read: {e}")))?;
        let text = String::from_utf8_lossy(&bytes);
        let decoded = hex::decode(text.trim()).ok().filter(|k| k.len() == 32);
        let key = match decoded {
            Some(key) => key,
            None if bytes.len() == 32 => bytes,
            None => return Err(err("must hold 32 bytes, as 64 hex characters".into())),
        };
        let mut out = [0u8; 32];
        out.copy_from_slice(&key);
        Ok(Self::from_bytes(out))
    }

    /// Writes the key as hex, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), CipherError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| CipherError::Key {
            path: path.to_path_buf(),
            message: format!("cannot be written: {e}"),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        file.write_all(format!("{}\n", hex::encode(self.key)).as_bytes())
            .map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.key).into())
    }

    /// Seals a value for the secret `name`: hex of nonce followed by ciphertext and tag.
    pub fn seal(&self, name: &str, value: &[u8]) -> String {
        let nonce: [u8; 24] = rand::random();
        let payload = Payload {
            msg: value,
            aad: name.as_bytes(),
        };
        // Encryption with a valid key and nonce only fails for inputs over 256 GiB.
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        hex::encode(out)
    }

    /// Opens a sealed value. `key_id` is the fingerprint stored with the record.
    pub fn open(&self, name: &str, sealed: &str, key_id: &str) -> Result<Vec<u8>, CipherError> {
        if key_id != self.fingerprint {
            return Err(CipherError::WrongKey {
                name: name.to_string(),
                stored: key_id.to_string(),
                current: self.fingerprint.clone(),
            });
        }
        let tampered = || CipherError::Tampered {
            name: name.to_string(),
        };
        let bytes = hex::decode(sealed).map_err(|_| tampered())?;
        if bytes.len() < 24 + 16 {
            return Err(tampered());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let payload = Payload {
            msg: ciphertext,
            aad: name.as_bytes(),
        };
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| tampered())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_fails_closed() {
        let key = MasterKey::generate();
        let sealed = key.seal("TOKEN", b"hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            key.open("TOKEN", &sealed, key.fingerprint()).unwrap(),
            b"hunter2"
        );
        // Another name (moved record), a flipped byte, another key: all refuse.
        assert!(matches!(
            key.open("OTHER", &sealed, key.fingerprint()),
            Err(CipherError::Tampered { .. })
        ));
        let mut bytes = hex::decode(&sealed).unwrap();
        bytes[30] ^= 1;
        let flipped = hex::encode(bytes);
        assert!(matches!(
            key.open("TOKEN", &flipped, key.fingerprint()),
            Err(CipherError::Tampered { .. })
        ));
        let other = MasterKey::generate();
        assert!(matches!(
            other.open("TOKEN", &sealed, key.fingerprint()),
            Err(CipherError::WrongKey { .. })
        ));
        assert!(format!("{key:?}").contains("[redacted]"));
    }

    #[test]
    fn key_files_round_trip_with_owner_only_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let (created, source) = MasterKey::load_or_create(&dir).unwrap();
        assert!(matches!(source, KeySource::Created(_)));
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let (loaded, source) = MasterKey::load_or_create(&dir).unwrap();
        assert!(matches!(source, KeySource::File(_)));
        assert_eq!(loaded.fingerprint(), created.fingerprint());
        std::fs::write(dir.join(KEY_FILE), "short").unwrap();
        assert!(MasterKey::load_or_create(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "operator-key-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
