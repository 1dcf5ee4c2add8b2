//! What an MCP server definition must satisfy, and `${secret:NAME}` in its header values.

use std::collections::BTreeMap;

/// The first problem with a server definition, as (field, message); `None` when it is fine.
/// A name is 1-32 lowercase letters, digits, `-` or `_`, without `__` (tool names are
/// `mcp__<server>__<tool>`); exactly one of `url` (http or https) and `command`; headers
/// only with a url.
pub fn mcp_server_problem(
    name: &str,
    url: Option<&str>,
    command: Option<&str>,
    headers: &BTreeMap<String, String>,
) -> Option<(&'static str, String)> {
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return Some((
            "name",
            format!("{name:?} must be 1-32 lowercase letters, digits, '-' or '_' (no \"__\")"),
        ));
    }
    match (url, command) {
        (Some(_), Some(_)) | (None, None) => {
            return Some((
                "url",
                "give either url (HTTP) or command (stdio), not both".into(),
            ));
        }
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || reqwest::Url::parse(url).is_err()
            {
                return Some(("url", format!("{url:?} is not an http(s) URL")));
            }
        }
        (None, Some(command)) => {
            if command.trim().is_empty() {
                return Some(("command", "must not be empty".into()));
            }
            if !headers.is_empty() {
                return Some(("headers", "are for HTTP servers (url) only".into()));
            }
        }
    }
    for (header, value) in headers {
        if let Err(e) = secret_refs(value) {
            return Some(("headers", format!("{header}: {e}")));
        }
    }
    None
}

/// The secret names a header value refers to as `${secret:NAME}`.
pub fn secret_refs(value: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find("${secret:") {
        let after = &rest[at + "${secret:".len()..];
        let Some(end) = after.find('}') else {
            return Err("a ${secret:NAME} reference is not closed".into());
        };
        let name = &after[..end];
        if name.is_empty() {
            return Err("${secret:} names no secret".into());
        }
        names.push(name.to_string());
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// The value with every `${secret:NAME}` replaced by `lookup(NAME)`.
pub fn fill_secrets(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("${secret:") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "${secret:".len()..];
        let end = after
            .find('}')
            .ok_or("a ${secret:NAME} reference is not closed")?;
        let name = &after[..end];
        let found = lookup(name).ok_or_else(|| format!("there is no secret called {name}"))?;
        out.push_str(&found);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_checked_field_by_field() {
        let none = BTreeMap::new();
        assert_eq!(
            mcp_server_problem("time", None, Some("uvx mcp-server-time"), &none),
            None
        );
        assert_eq!(
            mcp_server_problem("gh", Some("https://x.test/mcp"), None, &none),
            None
        );
        assert_eq!(
            mcp_server_problem("a__b", None, Some("x"), &none)
                .unwrap()
                .0,
            "name"
        );
        assert_eq!(
            mcp_server_problem("Time", None, Some("x"), &none)
                .unwrap()
                .0,
            "name"
        );
        assert_eq!(mcp_server_problem("t", None, None, &none).unwrap().0, "url");
        assert_eq!(
            mcp_server_problem("t", Some("ftp://x"), None, &none)
                .unwrap()
                .0,
            "url"
        );
        let headers =
            BTreeMap::from([("Authorization".to_string(), "Bearer ${secret:X".to_string())]);
        assert_eq!(
            mcp_server_problem("t", Some("http://x"), None, &headers)
                .unwrap()
                .0,
            "headers"
        );
    }

    #[test]
    fn secret_references_are_filled_in() {
        let lookup = |n: &str| (n == "TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            fill_secrets("Bearer ${secret:TOKEN}", &lookup).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(
            secret_refs("a ${secret:A} b ${secret:B}").unwrap(),
            vec!["A", "B"]
        );
        assert!(
            fill_secrets("${secret:NOPE}", &lookup)
                .unwrap_err()
                .contains("NOPE")
        );
    }
}
