//! Forms that change things: every button and form on the page posts to `/do/<operation>`, which
//! runs that operation of the control surface as the owner, like the JSON API does. Form fields
//! are strings; each is turned into the type the operation's JSON schema gives it (integer,
//! number, boolean, list of comma-separated words), so no operation needs a page-only form.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::super::HttpState;
use super::super::api::{issue_key, revoke, status_of};
use super::{esc, owner, page};
use crate::ops::Ops;

/// Where the result page links back to: a path on this site, else the overview.
fn back_link(fields: &BTreeMap<String, String>) -> String {
    match fields.get("back") {
        Some(back) if back.starts_with('/') && !back.starts_with("//") => back.clone(),
        _ => "/".to_string(),
    }
}

fn result_page(status: StatusCode, title: &str, text: &str, back: &str) -> Response {
    (
        status,
        page(
            title,
            &format!(
                "<pre id=\"result\">{}</pre><p><a id=\"back\" href=\"{}\">Back</a></p>",
                esc(text),
                esc(back)
            ),
        ),
    )
        .into_response()
}

/// Runs an operation from a form and shows what it said.
pub(super) async fn run(
    State(state): State<HttpState>,
    Path(op): Path<String>,
    Form(fields): Form<BTreeMap<String, String>>,
) -> Response {
    let back = back_link(&fields);
    let Some(spec) = Ops::spec(&op) else {
        return result_page(
            StatusCode::NOT_FOUND,
            "Failed",
            &format!("there is no operation called {op:?}"),
            &back,
        );
    };
    let args = match form_args(&spec.arguments_schema(), fields) {
        Ok(args) => args,
        Err(message) => return result_page(StatusCode::BAD_REQUEST, "Failed", &message, &back),
    };
    match state.ops.invoke(&owner(), spec.name, args).await {
        Ok(out) => result_page(StatusCode::OK, "Done", &out.text, &back),
        Err(e) => result_page(status_of(&e).0, "Failed", &e.to_string(), &back),
    }
}

/// Turns form fields into an operation's arguments, typed by its schema. Empty fields are left
/// out (the operation's default applies); `back` is the page's own field.
fn form_args(schema: &Value, fields: BTreeMap<String, String>) -> Result<Value, String> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut args = Map::new();
    for (key, text) in fields {
        if key == "back" {
            continue;
        }
        let kind = properties
            .and_then(|p| p.get(&key))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("string");
        let trimmed = text.trim();
        if trimmed.is_empty() && kind != "string" {
            continue;
        }
        let value = match kind {
            "integer" => json!(
                trimmed
                    .parse::<i64>()
                    .map_err(|_| format!("{key} must be a whole number, not {trimmed:?}"))?
            ),
            "number" => json!(
                trimmed
                    .parse::<f64>()
                    .map_err(|_| format!("{key} must be a number, not {trimmed:?}"))?
            ),
            "boolean" => json!(matches!(trimmed, "true" | "on" | "yes" | "1")),
            "array" => json!(
                trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
            ),
            // `key=value, key=value`
            "object" => {
                let mut map = Map::new();
                for pair in trimmed.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("{key} takes key=value pairs, not {pair:?}"))?;
                    map.insert(k.trim().to_string(), json!(v.trim()));
                }
                Value::Object(map)
            }
            _ if trimmed.is_empty() => continue,
            // Strings keep their text as typed (a secret value may start with a space).
            _ => Value::String(text),
        };
        args.insert(key, value);
    }
    Ok(Value::Object(args))
}

#[derive(serde::Deserialize)]
pub(super) struct NewKeyForm {
    name: String,
}

/// Creates an API key and shows it, once.
pub(super) async fn new_key(
    State(state): State<HttpState>,
    Form(form): Form<NewKeyForm>,
) -> Response {
    let name = form.name.trim();
    if name.is_empty() {
        return result_page(
            StatusCode::BAD_REQUEST,
            "Failed",
            "a key needs a name",
            "/keys",
        );
    }
    match issue_key(&state.store, name, "admin page").await {
        Ok((id, key)) => page(
            "API key created",
            &format!(
                "<p>Key {id} ({}) — copy it now; it is not shown again:</p>\
                 <pre id=\"new-key\">{}</pre><p><a href=\"/keys\">Back to API keys</a></p>",
                esc(name),
                esc(&key)
            ),
        )
        .into_response(),
        Err(e) => result_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed",
            &e.to_string(),
            "/keys",
        ),
    }
}

pub(super) async fn revoke_key(State(state): State<HttpState>, Path(id): Path<i64>) -> Response {
    match revoke(&state.store, id, "admin page").await {
        Ok(true) => result_page(
            StatusCode::OK,
            "Done",
            &format!("API key {id} revoked."),
            "/keys",
        ),
        Ok(false) => result_page(
            StatusCode::NOT_FOUND,
            "Failed",
            &format!("no live API key {id}"),
            "/keys",
        ),
        Err(e) => result_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed",
            &e.to_string(),
            "/keys",
        ),
    }
}

/// A one-button form that runs `op` on the item `name` (with `key` as the argument name).
pub(super) fn button(
    op: &str,
    key: &str,
    name: &str,
    label: &str,
    confirm: Option<&str>,
) -> String {
    let confirm = confirm
        .map(|q| format!(" data-confirm=\"{}\"", esc(&q.replace("{}", name))))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"/do/{op}\" class=\"inline\"{confirm}>\
         <input type=\"hidden\" name=\"{key}\" value=\"{n}\">\
         <input type=\"hidden\" name=\"back\" value=\"{back}\">\
         <button>{label}</button></form>",
        n = esc(name),
        back = esc(&current_page(op)),
    )
}

/// The page an operation's button lives on, for the result page's back link.
fn current_page(op: &str) -> String {
    let area = op.split('_').next().unwrap_or_default();
    match area {
        "instance" | "file" => "/instances".into(),
        "agent" => "/agents".into(),
        other => format!("/{other}s"),
    }
}

/// A field of a form: the argument's name, its label, and how it is typed in.
pub(super) struct Field {
    pub name: &'static str,
    pub label: &'static str,
    /// `text`, `password`, `textarea` or `checkbox`.
    pub input: &'static str,
}

pub(super) const fn field(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        input: "text",
    }
}

/// A form that runs `op` with the fields typed in.
pub(super) fn form(op: &str, title: &str, fields: &[Field], hidden: &[(&str, &str)]) -> String {
    let mut inputs = String::new();
    for f in fields {
        let input = match f.input {
            "textarea" => format!(
                "<textarea name=\"{n}\" id=\"{op}-{n}\" rows=\"6\" cols=\"60\"></textarea>",
                n = f.name
            ),
            "checkbox" => format!(
                "<input type=\"checkbox\" name=\"{n}\" id=\"{op}-{n}\" value=\"true\">",
                n = f.name
            ),
            kind => format!(
                "<input type=\"{kind}\" name=\"{n}\" id=\"{op}-{n}\" autocomplete=\"off\">",
                n = f.name
            ),
        };
        inputs.push_str(&format!("<label>{} {input}</label> ", esc(f.label)));
    }
    for (name, value) in hidden {
        inputs.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        ));
    }
    if !hidden.iter().any(|(name, _)| *name == "back") {
        inputs.push_str(&format!(
            "<input type=\"hidden\" name=\"back\" value=\"{}\">",
            esc(&current_page(op))
        ));
    }
    format!(
        "<form method=\"post\" action=\"/do/{op}\" class=\"op\" id=\"form-{op}\">\
         <fieldset><legend>{t}</legend>{inputs}\
         <button id=\"{op}-submit\">{t}</button></fieldset></form>",
        t = esc(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_typed_by_the_schema() {
        let schema = json!({ "properties": {
            "name": { "type": "string" },
            "memory_mb": { "type": "integer" },
            "cpus": { "type": "number" },
            "global": { "type": "boolean" },
            "tags": { "type": "array" },
            "network": { "type": "string" },
            "labels": { "type": "object" }
        }});
        let fields: BTreeMap<String, String> = [
            ("name", "web"),
            ("memory_mb", "256"),
            ("cpus", "0.5"),
            ("global", "true"),
            ("tags", "a, b,,"),
            ("network", ""),
            ("labels", "region=eu, gpu = yes"),
            ("back", "/instances"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let args = form_args(&schema, fields).unwrap();
        assert_eq!(
            args,
            json!({ "name": "web", "memory_mb": 256, "cpus": 0.5, "global": true, "tags": ["a", "b"],
                    "labels": { "region": "eu", "gpu": "yes" } })
        );
        let bad: BTreeMap<String, String> = [("memory_mb".to_string(), "lots".to_string())].into();
        assert!(form_args(&schema, bad).unwrap_err().contains("memory_mb"));
    }

    #[test]
    fn back_links_stay_on_this_site() {
        let with = |b: &str| back_link(&[("back".to_string(), b.to_string())].into());
        assert_eq!(with("/secrets"), "/secrets");
        assert_eq!(with("//evil.example"), "/");
        assert_eq!(with("https://evil.example"), "/");
    }
}
