//! The redactor: every secret value, and its base64, hex and URL-encoded forms, is replaced by
//! `[secret:NAME]` wherever text leaves the process or is written down.
//!
//! It is the one process-wide registry in the daemon, because the log writer (installed before
//! anything else exists) must use the same list as the store, the hub and the control surface.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// Values shorter than this are not redacted (they would match ordinary text).
const MIN_VALUE: usize = 4;
/// Encoded forms shorter than this are not redacted, for the same reason.
const MIN_FORM: usize = 8;

#[derive(Clone, Default)]
pub struct Redactor {
    /// (needle, replacement), longest needle first.
    needles: Arc<RwLock<Vec<(String, String)>>>,
}

impl Redactor {
    /// The process-wide redactor.
    pub fn global() -> &'static Redactor {
        static GLOBAL: OnceLock<Redactor> = OnceLock::new();
        GLOBAL.get_or_init(Redactor::default)
    }

    /// Registers (or replaces) the value of secret `name`.
    pub fn set(&self, name: &str, value: &str) {
        let replacement = format!("[secret:{name}]");
        let mut needles = self.needles.write().unwrap_or_else(|e| e.into_inner());
        needles.retain(|(_, r)| r != &replacement);
        if value.len() >= MIN_VALUE {
            for form in forms(value) {
                needles.push((form, replacement.clone()));
            }
        }
        needles.sort_by_key(|(needle, _)| std::cmp::Reverse(needle.len()));
        needles.dedup_by(|a, b| a.0 == b.0);
    }

    /// Forgets secret `name`.
    pub fn remove(&self, name: &str) {
        let replacement = format!("[secret:{name}]");
        let mut needles = self.needles.write().unwrap_or_else(|e| e.into_inner());
        needles.retain(|(_, r)| r != &replacement);
    }

    /// The text with every known secret form replaced.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let needles = self.needles.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Cow::Borrowed(text);
        for (needle, replacement) in needles.iter() {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), replacement));
            }
        }
        out
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }
}

/// The forms a value may take in output: itself, hex, URL-encoded, and base64 (standard and
/// URL-safe) at each of the three byte alignments it can have inside a longer encoded stream,
/// keeping only the characters that depend on the value alone.
fn forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut out = vec![
        value.to_string(),
        hex::encode(bytes),
        hex::encode_upper(bytes),
    ];
    let url = url_encode(value);
    if url != value {
        out.push(url);
    }
    for skip in 0..3usize {
        let Some(rest) = bytes.get(skip..) else {
            continue;
        };
        let whole = rest.len() / 3 * 3;
        if whole == 0 {
            continue;
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            out.push(engine.encode(&rest[..whole]));
        }
    }
    out.retain(|f| f.len() >= MIN_FORM || f == value);
    out
}

fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_encoded_forms() {
        let r = Redactor::default();
        let value = "s3cr3t-canary/value+42";
        r.set("CANARY", value);
        let b64_line = STANDARD_NO_PAD.encode(format!("{value}\n"));
        let text = format!(
            "env: CANARY={value}\nb64: {b64_line}\nhex: {}\nurl: {}",
            hex::encode(value),
            url_encode(value)
        );
        let out = r.redact(&text).into_owned();
        assert!(!out.contains(value), "{out}");
        assert!(!out.contains(&hex::encode(value)), "{out}");
        assert!(!out.contains(&url_encode(value)), "{out}");
        // The base64 of "value\n" keeps at most the last group's few characters.
        assert!(!out.contains(&b64_line[..b64_line.len() - 4]), "{out}");
        assert!(out.contains("[secret:CANARY]"));

        // Inside an encoded stream at another alignment, too.
        let shifted = STANDARD_NO_PAD.encode(format!("x{value}"));
        assert!(!r.redact(&shifted).contains(&shifted[4..shifted.len() - 4]));

        let mut json = serde_json::json!({ "a": [format!("key {value}")] });
        r.redact_json(&mut json);
        assert_eq!(json["a"][0], "key [secret:CANARY]");

        r.remove("CANARY");
        assert_eq!(r.redact(value), value);
    }
}
