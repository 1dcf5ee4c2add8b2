//! The activity feed page: filters by kind, role, agent, instance and time; export as JSON lines;
//! and a live view that the server pushes to (server-sent events on `/activity/stream`, resumed
//! by entry id, so a dropped connection neither repeats nor loses entries).

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::super::HttpState;
use super::{encode, esc, page, session_of};
use crate::domain::{ActorRole, format_millis, now_millis};
use crate::store::{ActivityEntry, ActivityFilter};

/// Entries sent to catch up when a stream starts after an older entry.
const CATCH_UP: u32 = 1000;

#[derive(Deserialize, Default)]
pub(super) struct ActivityQuery {
    kind: Option<String>,
    agent: Option<String>,
    role: Option<String>,
    instance: Option<String>,
    /// Only the last this many minutes.
    minutes: Option<u64>,
    /// `0` pauses the live view; anything else (or nothing) keeps it on.
    live: Option<String>,
    format: Option<String>,
    limit: Option<u32>,
    /// The stream starts after this entry.
    after: Option<i64>,
}

fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

impl ActivityQuery {
    fn filter(&self) -> Result<ActivityFilter, String> {
        let role = match given(&self.role) {
            None => None,
            Some(text) => Some(ActorRole::parse(&text).ok_or_else(|| {
                format!("role must be owner, user, agent or system, not {text:?}")
            })?),
        };
        Ok(ActivityFilter {
            kind_prefix: given(&self.kind),
            agent: given(&self.agent),
            role,
            instance: given(&self.instance),
            since: self
                .minutes
                .filter(|m| *m > 0)
                .map(|m| now_millis() - (m as i64) * 60_000),
            after_id: None,
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }

    /// The filter part of the query, to hand on to the stream.
    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("kind", &self.kind),
            ("agent", &self.agent),
            ("role", &self.role),
            ("instance", &self.instance),
        ] {
            if let Some(v) = given(value) {
                parts.push(format!("{key}={}", encode(&v)));
            }
        }
        if let Some(m) = self.minutes.filter(|m| *m > 0) {
            parts.push(format!("minutes={m}"));
        }
        parts.join("&")
    }
}

fn entry_json(e: &ActivityEntry) -> serde_json::Value {
    json!({
        "id": e.id, "at": e.at, "time": format_millis(e.at), "kind": e.kind, "role": e.role,
        "actor": e.actor, "agent": e.agent, "instance": e.instance, "summary": e.summary,
    })
}

pub(super) async fn feed(
    State(state): State<HttpState>,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let filter = match q.filter() {
        Ok(filter) => filter,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let entries = match state.store.activity(&filter).await {
        Ok(entries) => entries,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the activity feed: {e}"),
            )
                .into_response();
        }
    };
    if q.format.as_deref() == Some("jsonl") {
        let lines: String = entries
            .iter()
            .map(|e| entry_json(e).to_string() + "\n")
            .collect();
        return ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response();
    }
    let rows: String = entries
        .iter()
        .map(|e| {
            let cells = [
                format_millis(e.at),
                e.kind.clone(),
                e.role.clone(),
                e.actor.clone(),
                e.agent.clone().unwrap_or_default(),
                e.instance.clone().unwrap_or_default(),
                e.summary.clone(),
            ];
            let cells: String = cells
                .iter()
                .map(|c| format!("<td>{}</td>", esc(c)))
                .collect();
            format!("<tr class=\"entry\">{cells}</tr>")
        })
        .collect();
    let live = q.live.as_deref() != Some("0");
    let newest = entries.first().map(|e| e.id).unwrap_or(0);
    let query = q.query_string();
    let stream = if live {
        let sep = if query.is_empty() { "" } else { "&" };
        let url = format!("/activity/stream?{query}{sep}after={newest}");
        format!(" data-stream=\"{}\"", esc(&url))
    } else {
        String::new()
    };
    let role_options: String = std::iter::once("")
        .chain(ActorRole::ALL.iter().map(|r| r.as_str()))
        .map(|r| {
            let selected =
                if given(&q.role).as_deref() == Some(r) || (r.is_empty() && q.role.is_none()) {
                    " selected"
                } else {
                    ""
                };
            let label = if r.is_empty() { "any role" } else { r };
            format!("<option value=\"{r}\"{selected}>{label}</option>")
        })
        .collect();
    let form = format!(
        "<form method=\"get\" id=\"filters\"><input name=\"kind\" placeholder=\"kind prefix (op., message., llm.)\" value=\"{}\">\
         <select name=\"role\" id=\"role\">{role_options}</select>\
         <input name=\"agent\" placeholder=\"agent\" value=\"{}\">\
         <input name=\"instance\" placeholder=\"instance\" value=\"{}\">\
         <input name=\"minutes\" placeholder=\"last N minutes\" size=\"12\" value=\"{}\">\
         <select name=\"live\"><option value=\"1\"{}>live</option><option value=\"0\"{}>paused</option></select>\
         <button>Filter</button> <a href=\"{}\">export as JSON lines</a></form>\
         <p id=\"live-state\">{}</p>",
        esc(q.kind.as_deref().unwrap_or("")),
        esc(q.agent.as_deref().unwrap_or("")),
        esc(q.instance.as_deref().unwrap_or("")),
        q.minutes.map(|m| m.to_string()).unwrap_or_default(),
        if live { " selected" } else { "" },
        if live { "" } else { " selected" },
        esc(&format!(
            "/activity?format=jsonl{}{query}",
            if query.is_empty() { "" } else { "&" }
        )),
        if live { "connecting…" } else { "paused" },
    );
    page(
        "Activity",
        &format!(
            "{form}<table id=\"feed\"{stream}><tr><th>at</th><th>kind</th><th>role</th><th>actor</th>\
             <th>agent</th><th>instance</th><th>summary</th></tr>{rows}</table>"
        ),
    )
    .into_response()
}

/// Pushes entries matching the filter as they are written: first those after `after` (or the
/// `Last-Event-ID` a reconnecting browser sends), then each new one. The stream ends when the
/// session that opened it ends.
pub(super) async fn stream(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let mut filter = match q.filter() {
        Ok(filter) => filter,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = resume.or(q.after).unwrap_or(0);
    // Listen before reading the backlog, so nothing written in between is lost.
    let live = state.store.activity_live();
    filter.after_id = Some(after);
    filter.limit = CATCH_UP;
    let mut backlog = state.store.activity(&filter).await.unwrap_or_default();
    backlog.reverse();
    let instance_agent = match &filter.instance {
        Some(name) => state.store.instance(name).await.ok().and_then(|r| r.agent),
        None => None,
    };
    let follow = Follow {
        last: backlog.last().map(|e| e.id).unwrap_or(after),
        backlog: backlog.into_iter(),
        live,
        filter,
        instance_agent,
        sessions: state.sessions.clone(),
        session: session_of(&headers).unwrap_or_default(),
    };
    let events = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok::<_, Infallible>(event), follow))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One reader of the feed: the backlog first, then new entries that pass the filter, while the
/// session that opened it lasts.
struct Follow {
    backlog: std::vec::IntoIter<ActivityEntry>,
    live: tokio::sync::broadcast::Receiver<ActivityEntry>,
    /// The newest entry sent.
    last: i64,
    filter: ActivityFilter,
    /// The agent living in the filter's instance.
    instance_agent: Option<String>,
    sessions: std::sync::Arc<super::Sessions>,
    session: String,
}

impl Follow {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.sessions.valid(&self.session) {
                return None;
            }
            if let Some(entry) = self.backlog.next() {
                return Some(entry_event(&entry));
            }
            match self.live.recv().await {
                Ok(entry)
                    if entry.id > self.last
                        && self.filter.matches(&entry, self.instance_agent.as_deref()) =>
                {
                    if !self.sessions.valid(&self.session) {
                        return None;
                    }
                    self.last = entry.id;
                    return Some(entry_event(&entry));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    return Some(Event::default().event("missed").data(missed.to_string()));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn entry_event(entry: &ActivityEntry) -> Event {
    Event::default()
        .event("entry")
        .id(entry.id.to_string())
        .data(entry_json(entry).to_string())
}
