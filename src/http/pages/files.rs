//! The file browser: an instance's directories and files, read through the control surface's
//! `file_list` / `file_read` (so it runs inside the instance, as its user, within its limits),
//! and a form to write a file with `file_write`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::super::HttpState;
use super::actions::{Field, form};
use super::{encode, esc, owner, page};

#[derive(Deserialize)]
pub(super) struct PathQuery {
    #[serde(default)]
    path: String,
}

/// A link to a directory or file of the instance.
fn link(instance: &str, route: &str, path: &str, text: &str) -> String {
    format!(
        "<a href=\"/instances/{}/{route}?path={}\">{}</a>",
        esc(instance),
        esc(&encode(path)),
        esc(text)
    )
}

fn parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", _)) if trimmed.len() > 1 => Some("/"),
        Some((up, _)) if !up.is_empty() => Some(up),
        _ => None,
    }
}

fn child(path: &str, name: &str) -> String {
    format!("{}/{name}", path.trim_end_matches('/'))
}

fn failed(status: StatusCode, title: &str, message: &str, instance: &str) -> Response {
    (
        status,
        page(
            title,
            &format!(
                "<pre id=\"error\">{}</pre><p><a href=\"/instances\">Back to instances</a> · {}</p>",
                esc(message),
                link(instance, "files", "/workspace", "workspace")
            ),
        ),
    )
        .into_response()
}

pub(super) async fn browse(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    Query(q): Query<PathQuery>,
) -> Response {
    let args = json!({ "instance": name, "path": q.path });
    let out = match state.ops.invoke(&owner(), "file_list", args).await {
        Ok(out) => out,
        Err(e) => {
            let status = super::super::api::status_of(&e).0;
            return failed(status, &format!("Files of {name}"), &e.to_string(), &name);
        }
    };
    let dir = out.data["path"]
        .as_str()
        .unwrap_or("/workspace")
        .to_string();
    let mut rows = String::new();
    if let Some(up) = parent(&dir) {
        rows.push_str(&format!(
            "<tr class=\"up\"><td>{}</td><td>dir</td><td></td><td></td></tr>",
            link(&name, "files", up, "..")
        ));
    }
    for entry in out.data["entries"].as_array().into_iter().flatten() {
        let file = entry["name"].as_str().unwrap_or_default();
        let kind = entry["kind"].as_str().unwrap_or("other");
        let shown = match kind {
            "dir" => link(&name, "files", &child(&dir, file), &format!("{file}/")),
            "file" => link(&name, "file", &child(&dir, file), file),
            "link" => format!(
                "{} → {}",
                esc(file),
                esc(entry["target"].as_str().unwrap_or(""))
            ),
            _ => esc(file),
        };
        rows.push_str(&format!(
            "<tr class=\"file\"><td>{shown}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(kind),
            entry["size"].as_u64().unwrap_or(0),
            esc(entry["modified"].as_str().unwrap_or(""))
        ));
    }
    let back = format!("/instances/{name}/files?path={}", encode(&dir));
    let write = form(
        "file_write",
        "Write a file",
        &[
            Field {
                name: "path",
                label: "path",
                input: "text",
            },
            Field {
                name: "content",
                label: "content",
                input: "textarea",
            },
        ],
        &[("instance", &name), ("back", &back)],
    );
    page(
        &format!("Files of {name}"),
        &format!(
            "<p id=\"dir\">{}</p><table id=\"files\"><tr><th>name</th><th>kind</th><th>bytes</th>\
             <th>modified</th></tr>{rows}</table>{write}",
            esc(&dir)
        ),
    )
    .into_response()
}

pub(super) async fn view(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    Query(q): Query<PathQuery>,
) -> Response {
    let args = json!({ "instance": name, "path": q.path });
    let out = match state.ops.invoke(&owner(), "file_read", args).await {
        Ok(out) => out,
        Err(e) => {
            let status = super::super::api::status_of(&e).0;
            return failed(status, &q.path, &e.to_string(), &name);
        }
    };
    let content = out.data["content"].as_str().unwrap_or_default();
    let dropped = out.data["dropped_bytes"].as_u64().unwrap_or(0);
    let cut = if dropped > 0 {
        format!("<p>The file goes on for {dropped} more bytes, not shown here.</p>")
    } else {
        String::new()
    };
    let up = parent(&q.path).unwrap_or("/workspace");
    page(
        &format!("{name}: {}", q.path),
        &format!(
            "<p>{}</p><pre id=\"content\">{}</pre>{cut}",
            link(&name, "files", up, "back to the directory"),
            esc(content)
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_up_and_down() {
        assert_eq!(parent("/workspace/a/b"), Some("/workspace/a"));
        assert_eq!(parent("/workspace"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(child("/workspace/", "x y"), "/workspace/x y");
        assert_eq!(encode("/workspace/x y&z"), "/workspace/x%20y%26z");
    }
}
