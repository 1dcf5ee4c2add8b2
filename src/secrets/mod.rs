//! Secrets: named credentials encrypted at rest under a master key, granted to instances,
//! injected as environment variables of one exec, and redacted from everything that leaves the
//! process or is written down.
//!
//! `cipher.rs` holds the master key and the AEAD; `redact.rs` the process-wide redactor. This
//! module does no I/O beyond reading or creating the master key file, and knows nothing of
//! operations, agents or channels.

mod cipher;
mod redact;

pub use cipher::{CREDENTIAL, CipherError, KEY_FILE, KeySource, MasterKey};
pub use redact::Redactor;

/// A secret name must look like an environment variable: `GITHUB_TOKEN`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_environment_variables() {
        assert!(super::valid_name("GITHUB_TOKEN"));
        assert!(super::valid_name("_X1"));
        assert!(!super::valid_name("github_token"));
        assert!(!super::valid_name("1X"));
        assert!(!super::valid_name("A-B"));
        assert!(!super::valid_name(""));
    }
}
