//! Agent names: short, lowercase, safe in chat mentions, container names and paths.

use std::fmt;

/// The built-in manager agent's name. No stored agent may take it.
pub const OPERATOR: &str = "operator";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name must not be empty")]
    Empty,
    #[error("a name has at most 32 characters (got {0})")]
    TooLong(usize),
    #[error(
        "name {0:?} is not allowed: use lowercase letters, digits and single hyphens, starting with a letter"
    )]
    Charset(String),
    #[error("\"operator\" is reserved for the built-in manager agent")]
    Reserved,
}

/// A validated name of an agent or an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(String);

impl AgentName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = raw.trim().trim_start_matches('@').to_ascii_lowercase();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > 32 {
            return Err(NameError::TooLong(name.len()));
        }
        let valid_chars = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let starts_with_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
        if !valid_chars || !starts_with_letter || name.ends_with('-') || name.contains("--") {
            return Err(NameError::Charset(raw.to_string()));
        }
        if name == super::OPERATOR {
            return Err(NameError::Reserved);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_normalizes_case_and_mentions() {
        assert_eq!(AgentName::parse("daniel").unwrap().as_str(), "daniel");
        assert_eq!(
            AgentName::parse("@Repo-Watch2").unwrap().as_str(),
            "repo-watch2"
        );
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(AgentName::parse(" "), Err(NameError::Empty));
        assert!(matches!(
            AgentName::parse("a b"),
            Err(NameError::Charset(_))
        ));
        assert!(matches!(AgentName::parse("-x"), Err(NameError::Charset(_))));
        assert!(matches!(
            AgentName::parse("x--y"),
            Err(NameError::Charset(_))
        ));
        assert!(matches!(
            AgentName::parse("9lives"),
            Err(NameError::Charset(_))
        ));
        assert!(matches!(
            AgentName::parse(&"a".repeat(33)),
            Err(NameError::TooLong(33))
        ));
        assert_eq!(AgentName::parse("Operator"), Err(NameError::Reserved));
    }
}

/// Splits a leading `@name` mention off a message: `"@daniel look at this"` gives
/// `("daniel", "look at this")`. The name is lowercased; nothing is validated.
pub fn split_mention(text: &str) -> Option<(String, &str)> {
    let rest = text.trim_start().strip_prefix('@')?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let name = rest[..end].to_ascii_lowercase();
    let tail = rest[end..].trim_start_matches([',', ':']).trim_start();
    Some((name, tail))
}

#[cfg(test)]
mod mention_tests {
    use super::split_mention;

    #[test]
    fn splits_leading_mentions_only() {
        assert_eq!(
            split_mention("@Daniel, look"),
            Some(("daniel".into(), "look"))
        );
        assert_eq!(split_mention("hi @daniel"), None);
        assert_eq!(split_mention("@ hi"), None);
    }
}
