//! Agent Skills: a folder with `SKILL.md` (YAML front matter, then markdown instructions) and
//! optional `scripts/`, `references/` and `assets/`. This module parses and validates a skill and
//! hashes its files; storing, diffing and installing happen in `ops`. No I/O here.

mod diff;

use std::collections::BTreeMap;

use serde_norway::Value;
use sha2::{Digest, Sha256};

pub use diff::line_diff;

/// The largest file and the largest skill accepted, in bytes.
pub const MAX_FILE: usize = 256 * 1024;
pub const MAX_TOTAL: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkillError {
    #[error("SKILL.md line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("SKILL.md field `{field}` (line {line}): {message}")]
    Field {
        field: String,
        line: usize,
        message: String,
    },
    #[error("skill file {path}: {message}")]
    File { path: String, message: String },
}

/// A validated skill.
#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    pub name: String,
    pub description: String,
    pub license: Option<String>,
    pub compatibility: Option<String>,
    pub allowed_tools: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The markdown after the front matter.
    pub body: String,
}

const KNOWN: [&str; 6] = [
    "name",
    "description",
    "license",
    "compatibility",
    "metadata",
    "allowed-tools",
];

/// The 1-based line of `key:` in the front matter (which starts on line 2 of the file).
fn line_of(front: &str, key: &str) -> usize {
    front
        .lines()
        .position(|l| l.trim_start().starts_with(&format!("{key}:")))
        .map_or(1, |i| i + 2)
}

/// A skill name: 1-64 characters, lowercase letters, digits and single hyphens, not at the ends.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Parses `SKILL.md` of the folder `folder`.
pub fn parse(folder: &str, skill_md: &str) -> Result<Skill, SkillError> {
    let text = skill_md.strip_prefix('\u{feff}').unwrap_or(skill_md);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or(SkillError::Syntax {
            line: 1,
            message: "must start with a `---` line opening the YAML front matter".into(),
        })?;
    let (front, body) = match rest.find("\n---") {
        Some(end)
            if rest[end + 4..].starts_with('\n')
                || rest[end + 4..].starts_with("\r\n")
                || rest[end + 4..].is_empty() =>
        {
            (
                &rest[..end + 1],
                rest[end + 4..].trim_start_matches(['\r', '\n']),
            )
        }
        _ => {
            return Err(SkillError::Syntax {
                line: text.lines().count().max(1),
                message: "the front matter is not closed by a `---` line".into(),
            });
        }
    };
    let value: Value = serde_norway::from_str(front).map_err(|e| SkillError::Syntax {
        line: e.location().map_or(2, |l| l.line() + 1),
        message: format!("invalid YAML: {e}"),
    })?;
    let Value::Mapping(map) = value else {
        return Err(SkillError::Syntax {
            line: 2,
            message: "the front matter must be a mapping of fields".into(),
        });
    };
    let field_err = |field: &str, message: String| SkillError::Field {
        field: field.to_string(),
        line: line_of(front, field),
        message,
    };
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in map {
        let Value::String(k) = k else {
            return Err(SkillError::Syntax {
                line: 2,
                message: "field names must be text".into(),
            });
        };
        if !KNOWN.contains(&k.as_str()) {
            return Err(field_err(
                &k,
                format!("is not a known field (known: {})", KNOWN.join(", ")),
            ));
        }
        fields.insert(k, v);
    }
    let text_field = |field: &str, required: bool| -> Result<Option<String>, SkillError> {
        match fields.get(field) {
            None | Some(Value::Null) if required => Err(SkillError::Field {
                field: field.to_string(),
                line: 2,
                message: "is required".into(),
            }),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(field_err(field, "must be text".into())),
        }
    };
    let name = text_field("name", true)?.unwrap_or_default();
    if !valid_name(&name) {
        return Err(field_err(
            "name",
            format!("{name:?} must be 1-64 lowercase letters, digits and single hyphens"),
        ));
    }
    if name != folder {
        return Err(field_err(
            "name",
            format!("{name:?} must equal the folder name {folder:?}"),
        ));
    }
    let description = text_field("description", true)?.unwrap_or_default();
    let chars = description.chars().count();
    if chars == 0 || chars > 1024 {
        return Err(field_err(
            "description",
            format!("must be 1 to 1024 characters (it has {chars})"),
        ));
    }
    let mut metadata = BTreeMap::new();
    match fields.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let key = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(field_err(
                            "metadata",
                            format!("value of {key} must be text"),
                        ));
                    }
                };
                metadata.insert(key, value);
            }
        }
        Some(_) => {
            return Err(field_err(
                "metadata",
                "must be a mapping of text values".into(),
            ));
        }
    }
    Ok(Skill {
        name,
        description,
        license: text_field("license", false)?,
        compatibility: text_field("compatibility", false)?,
        allowed_tools: text_field("allowed-tools", false)?,
        metadata,
        body: body.to_string(),
    })
}

/// Checks the files of a skill: `SKILL.md` plus files under `scripts/`, `references/` or
/// `assets/`, relative, within the size limits.
pub fn check_files(files: &BTreeMap<String, String>) -> Result<(), SkillError> {
    let mut total = 0;
    for (path, content) in files {
        let err = |message: &str| SkillError::File {
            path: path.clone(),
            message: message.to_string(),
        };
        let allowed = path == "SKILL.md"
            || ["scripts/", "references/", "assets/"]
                .iter()
                .any(|d| path.starts_with(d) && path.len() > d.len());
        if !allowed {
            return Err(err(
                "must be SKILL.md or under scripts/, references/ or assets/",
            ));
        }
        if path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
            || path.contains('\0')
        {
            return Err(err("must be a plain relative path"));
        }
        if content.len() > MAX_FILE {
            return Err(err("is larger than 256 KiB"));
        }
        total += content.len();
    }
    if !files.contains_key("SKILL.md") {
        return Err(SkillError::File {
            path: "SKILL.md".into(),
            message: "is missing".into(),
        });
    }
    if total > MAX_TOTAL {
        return Err(SkillError::File {
            path: "(all)".into(),
            message: "the skill is larger than 1 MiB".into(),
        });
    }
    Ok(())
}

/// The content hash of a skill's files (paths and contents, in order).
pub fn hash(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (path, content) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests;
