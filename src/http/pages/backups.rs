//! The backups page: the archives in the backup directory (`[backup] dir`, else `backups/` in
//! the state directory), newest first, each downloadable. Only names the directory listing
//! itself produced are served, so no path reaches outside it.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{esc, page};
use crate::backup::scheduled::list;
use crate::http::HttpState;

pub(super) async fn listing(State(state): State<HttpState>) -> Response {
    let mut found = list(&state.backups_dir);
    found.reverse();
    let rows: String = found
        .iter()
        .map(|(name, size)| {
            format!(
                "<tr class=\"backup\"><td><a href=\"/backups/{0}\" download>{0}</a></td><td>{1} KiB</td></tr>",
                esc(name),
                size.div_ceil(1024)
            )
        })
        .collect();
    let empty = if found.is_empty() {
        "<p>No backups yet. Set <code>[backup] dir</code> for scheduled ones, or send /backup in a chat.</p>"
    } else {
        ""
    };
    page(
        "Backups",
        &format!(
            "<p>In <code>{}</code>. Restore one with <code>operator restore FILE --state DIR</code>.</p>{empty}\
             <table><tr><th>archive</th><th>size</th></tr>{rows}</table>",
            esc(&state.backups_dir.display().to_string())
        ),
    )
    .into_response()
}

pub(super) async fn download(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    if !list(&state.backups_dir).iter().any(|(n, _)| *n == name) {
        return (StatusCode::NOT_FOUND, "no such backup").into_response();
    }
    match tokio::fs::read(state.backups_dir.join(&name)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/gzip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("cannot read backup {name}: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the backup").into_response()
        }
    }
}
