//! The pages that show the fleet and change it: overview, instances (with their controls and a
//! link to each one's files), agents and bindings, the listings (skills, secrets, automations,
//! webhooks) with a button per item, API keys, and the chat with Operator.

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::super::HttpState;
use super::actions::{Field, button, field, form};
use super::{esc, owner, page};
use crate::domain::{Caller, format_millis};
use crate::store::ActivityFilter;

pub(super) async fn overview(State(state): State<HttpState>) -> Html<String> {
    let status = state.ops.invoke(&owner(), "status", json!({})).await;
    let status = status.map(|o| o.text).unwrap_or_else(|e| e.to_string());
    let outbox = state.store.outbox_depth().await.unwrap_or(-1);
    let queue = (state.queue_depth)();
    let filter = ActivityFilter {
        limit: 200,
        ..ActivityFilter::default()
    };
    let errors: Vec<String> = state
        .store
        .activity(&filter)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.kind.contains("error")
                || e.kind.contains("failed")
                || e.kind.contains("undeliverable")
        })
        .take(10)
        .map(|e| {
            format!(
                "<li>{} {} — {}</li>",
                esc(&format_millis(e.at)),
                esc(&e.kind),
                esc(&e.summary)
            )
        })
        .collect();
    let errors = if errors.is_empty() {
        "<p>None.</p>".to_string()
    } else {
        format!("<ul>{}</ul>", errors.concat())
    };
    page(
        "Overview",
        &format!(
            "<pre id=\"status\">{}</pre><p>Queued messages: {queue} · outbox: {outbox}</p>\
             <h2>Recent errors</h2>{errors}",
            esc(&status)
        ),
    )
}

pub(super) async fn instances(State(state): State<HttpState>) -> Html<String> {
    let list = state.store.list_instances().await.unwrap_or_default();
    let mut body = String::from(
        "<table><tr><th>name</th><th>status</th><th>host</th><th>image</th><th>agent</th>\
         <th>memory</th><th>cpus</th><th>processes</th><th>network</th><th></th></tr>",
    );
    let mut logs = String::new();
    for i in &list {
        body.push_str(&format!(
            "<tr class=\"instance\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{} MB</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.name),
            esc(i.status.as_str()),
            esc(&i.host),
            esc(&i.image),
            esc(i.agent.as_deref().unwrap_or("")),
            i.memory_mb,
            i.cpus,
            i.pids_limit,
            esc(&i.network),
            instance_controls(&i.name),
        ));
        let tail = state
            .ops
            .invoke(
                &owner(),
                "instance_logs",
                json!({ "name": i.name, "tail": 20 }),
            )
            .await
            .map(|o| o.text)
            .unwrap_or_else(|e| e.to_string());
        logs.push_str(&format!(
            "<h3>{}</h3><pre class=\"logs\">{}</pre>",
            esc(&i.name),
            esc(&tail)
        ));
    }
    body.push_str("</table>");
    if list.is_empty() {
        body = "<p>No instances yet.</p>".into();
    }
    let create = form(
        "instance_create",
        "Create an instance",
        &[
            field("name", "name"),
            field("image", "image (default from config)"),
            field("memory_mb", "memory MB"),
            field("network", "network"),
            field("host", "host (default: least loaded)"),
            field("labels", "or host labels (region=eu, gpu=yes)"),
        ],
        &[],
    );
    let move_form = form(
        "instance_move",
        "Move an instance to another host",
        &[field("name", "instance"), field("host", "to host")],
        &[],
    );
    page(
        "Instances",
        &format!(
            "{}{body}{create}{move_form}<h2>Log tails</h2>{logs}",
            hosts_table(&state).await
        ),
    )
}

/// The Docker hosts: whether each answers, its engine, and what it holds against its capacity.
async fn hosts_table(state: &HttpState) -> String {
    let data = match state.ops.invoke(&owner(), "host_list", json!({})).await {
        Ok(out) => out.data,
        Err(e) => return format!("<p>{}</p>", esc(&e.to_string())),
    };
    let of = |used: &serde_json::Value, cap: &serde_json::Value| match cap.as_u64() {
        Some(cap) => format!("{used} of {cap}"),
        None => used.to_string(),
    };
    let rows: String = data["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let state = if h["reachable"] == json!(true) {
                format!("answers ({})", h["version"].as_str().unwrap_or("?"))
            } else {
                format!(
                    "not answering: {}",
                    h["error"].as_str().unwrap_or("no answer")
                )
            };
            let labels: Vec<String> = h["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            format!(
                "<tr class=\"host\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} MiB</td></tr>",
                esc(h["name"].as_str().unwrap_or("")),
                esc(h["endpoint"].as_str().unwrap_or("")),
                esc(&labels.join(", ")),
                esc(&state),
                of(&h["instances"], &h["capacity_instances"]),
                of(&h["memory_mb"], &h["capacity_memory_mb"]),
            )
        })
        .collect();
    format!(
        "<h2>Docker hosts</h2><table id=\"hosts\"><tr><th>host</th><th>endpoint</th><th>labels</th>\
         <th>state</th><th>instances</th><th>memory</th></tr>{rows}</table><h2>Instances</h2>"
    )
}

/// Files, start, stop, restart and delete for one instance.
fn instance_controls(name: &str) -> String {
    format!(
        "<a href=\"/instances/{n}/files\" class=\"files\">files</a> {}{}{}{}",
        button("instance_start", "targets", name, "start", None),
        button("instance_stop", "targets", name, "stop", Some("Stop {}?")),
        button("instance_restart", "targets", name, "restart", None),
        button(
            "instance_delete",
            "name",
            name,
            "delete",
            Some("Delete {} and its workspace?")
        ),
        n = esc(name)
    )
}

/// A listing page: what the listing operation says, a button per item, and a form to add one.
pub(super) struct Listing {
    title: &'static str,
    op: &'static str,
    /// Where the items are in the operation's data.
    items: &'static str,
    /// Per item: operation, label, and a question to confirm (`{}` is the item's name).
    actions: &'static [(&'static str, &'static str, Option<&'static str>)],
    /// Forms: operation, title, fields.
    forms: &'static [(&'static str, &'static str, &'static [Field])],
    /// An operation shown under the list for each item (`{"name": item}`), with its heading.
    detail: Option<(&'static str, &'static str)>,
}

pub(super) static SKILLS: Listing = Listing {
    title: "Skills",
    op: "skill_list",
    items: "skills",
    actions: &[],
    forms: &[
        (
            "skill_install",
            "Install a skill",
            &[
                field("name", "skill"),
                field("instances", "into instances (comma-separated)"),
            ],
        ),
        (
            "skill_uninstall",
            "Uninstall a skill",
            &[
                field("name", "skill"),
                field("instances", "from instances (comma-separated)"),
            ],
        ),
    ],
    detail: None,
};

pub(super) static SECRETS: Listing = Listing {
    title: "Secrets",
    op: "secret_list",
    items: "secrets",
    actions: &[(
        "secret_delete",
        "delete",
        Some("Delete the secret {}? Instances lose it at once."),
    )],
    forms: &[
        (
            "secret_create",
            "Add a secret",
            &[
                field("name", "name"),
                Field {
                    name: "value",
                    label: "value",
                    input: "password",
                },
                field("description", "description"),
                Field {
                    name: "global",
                    label: "every instance",
                    input: "checkbox",
                },
            ],
        ),
        (
            "secret_grant",
            "Grant a secret",
            &[field("name", "secret"), field("instance", "to instance")],
        ),
        (
            "secret_revoke",
            "Revoke a grant",
            &[field("name", "secret"), field("instance", "from instance")],
        ),
    ],
    detail: None,
};

pub(super) static AUTOMATIONS: Listing = Listing {
    title: "Automations",
    op: "automation_list",
    items: "automations",
    actions: &[
        ("automation_run", "run now", None),
        ("automation_enable", "enable", None),
        ("automation_disable", "disable", None),
        (
            "automation_delete",
            "delete",
            Some("Delete the automation {}?"),
        ),
    ],
    forms: &[(
        "automation_create",
        "Add an automation",
        &[
            field("name", "name"),
            field("cron", "cron (5 fields)"),
            field("timezone", "time zone"),
            field("agent", "agent"),
            Field {
                name: "prompt",
                label: "prompt",
                input: "textarea",
            },
        ],
    )],
    detail: Some(("automation_history", "History")),
};

pub(super) static WEBHOOKS: Listing = Listing {
    title: "Webhooks",
    op: "webhook_list",
    items: "webhooks",
    actions: &[
        ("webhook_enable", "enable", None),
        ("webhook_disable", "disable", None),
        (
            "webhook_rotate",
            "new URL",
            Some("Give {} a new URL? The old one stops working."),
        ),
        ("webhook_delete", "delete", Some("Delete the webhook {}?")),
    ],
    forms: &[(
        "webhook_create",
        "Add a webhook",
        &[
            field("name", "name"),
            field("agent", "agent"),
            Field {
                name: "template",
                label: "prompt template ({{payload}})",
                input: "textarea",
            },
        ],
    )],
    detail: None,
};

pub(super) async fn listing(
    State(state): State<HttpState>,
    listing: &'static Listing,
) -> Html<String> {
    let (text, data) = match state.ops.invoke(&owner(), listing.op, json!({})).await {
        Ok(out) => (out.text, out.data),
        Err(e) => (e.to_string(), json!({})),
    };
    let mut rows = String::new();
    if !listing.actions.is_empty() {
        for item in data[listing.items].as_array().into_iter().flatten() {
            let Some(name) = item["name"].as_str() else {
                continue;
            };
            let buttons: String = listing
                .actions
                .iter()
                .map(|(op, label, confirm)| button(op, "name", name, label, *confirm))
                .collect();
            rows.push_str(&format!(
                "<tr class=\"item\"><td>{}</td><td>{buttons}</td></tr>",
                esc(name)
            ));
        }
    }
    let rows = if rows.is_empty() {
        String::new()
    } else {
        format!("<table id=\"items\">{rows}</table>")
    };
    let forms: String = listing
        .forms
        .iter()
        .map(|(op, title, fields)| form(op, title, fields, &[]))
        .collect();
    let mut details = String::new();
    if let Some((op, heading)) = listing.detail {
        for name in data[listing.items]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["name"].as_str())
        {
            let text = match state
                .ops
                .invoke(&owner(), op, json!({ "name": name }))
                .await
            {
                Ok(out) => out.text,
                Err(e) => e.to_string(),
            };
            details.push_str(&format!(
                "<h3>{heading}: {}</h3><pre class=\"detail\">{}</pre>",
                esc(name),
                esc(&text)
            ));
        }
    }
    page(
        listing.title,
        &format!("<pre>{}</pre>{rows}{forms}{details}", esc(&text)),
    )
}

/// API keys for scripts: their names and state, a form to create one, a button to revoke.
pub(super) async fn keys(State(state): State<HttpState>) -> Response {
    let keys = match state.store.api_keys().await {
        Ok(keys) => keys,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let rows: String = keys
        .iter()
        .map(|(id, name, created, revoked)| {
            let state = match revoked {
                Some(at) => format!("revoked {}", format_millis(*at)),
                None => format!(
                    "<form method=\"post\" action=\"/keys/{id}/revoke\" class=\"inline\" \
                     data-confirm=\"Revoke key {id}? Scripts using it stop working.\">\
                     <button>revoke</button></form>"
                ),
            };
            format!(
                "<tr class=\"key\"><td>{id}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
                esc(name),
                format_millis(*created)
            )
        })
        .collect();
    page(
        "API keys",
        &format!(
            "<p>Scripts send <code>Authorization: Bearer &lt;key&gt;</code> to <code>/api/</code>. \
             A key is shown once, when it is created; only its hash is kept.</p>\
             <table><tr><th>id</th><th>name</th><th>created</th><th></th></tr>{rows}</table>\
             <form method=\"post\" action=\"/keys/new\" id=\"new-key-form\"><fieldset><legend>New key</legend>\
             <label>name <input name=\"name\" id=\"key-name\"></label> <button>Create</button></fieldset></form>"
        ),
    )
    .into_response()
}

/// The admin page's own conversation with Operator.
fn chat_ref() -> crate::domain::ChatRef {
    crate::domain::ChatRef::new("http", "admin-page")
}

pub(super) async fn chat_page(State(state): State<HttpState>) -> Html<String> {
    use crate::domain::{OPERATOR, Role};
    let mut log = String::new();
    if let Ok(conversation) = state.store.open_conversation(&chat_ref(), OPERATOR).await
        && let Ok(messages) = state.store.messages_after(conversation.id, 0).await
    {
        for m in messages {
            let who = match m.role {
                Role::User => "you",
                Role::Assistant if m.tool_calls.is_empty() => "Operator",
                _ => continue,
            };
            log.push_str(&format!(
                "<p class=\"message\"><b>{who}:</b> {}</p>",
                esc(&m.content).replace('\n', "<br>")
            ));
        }
    }
    page(
        "Chat with Operator",
        &format!(
            "{log}<form method=\"post\" action=\"/chat\"><input name=\"message\" id=\"message\" \
             size=\"60\" autocomplete=\"off\" autofocus> <button id=\"send\">Send</button>\
             <ul id=\"mention-list\"></ul></form><p><small>Type @ to mention an agent or a file \
             in any running instance.</small></p>"
        ),
    )
}

#[derive(Deserialize)]
pub(super) struct MentionQuery {
    #[serde(default)]
    q: String,
}

/// What `@q` could mean, for the chat box's popover (the page's session, not an API key).
pub(super) async fn mentions(
    State(state): State<HttpState>,
    axum::extract::Query(query): axum::extract::Query<MentionQuery>,
) -> Response {
    match state.ops.mention_suggestions(&query.q).await {
        Ok(found) => axum::Json(found).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct ChatForm {
    message: String,
}

pub(super) async fn chat_send(
    State(state): State<HttpState>,
    Form(form): Form<ChatForm>,
) -> Response {
    let message = form.message.trim().to_string();
    if !message.is_empty() {
        match state.ops.turn_runner() {
            Ok(runner) => {
                let caller = Caller::owner("admin page");
                let _ = runner
                    .person_turn(chat_ref(), crate::domain::OPERATOR.into(), caller, message)
                    .await;
            }
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        }
    }
    Redirect::to("/chat").into_response()
}

/// The agents, and which chats are bound to which.
pub(super) async fn agents(State(state): State<HttpState>) -> Html<String> {
    let text = match state.ops.invoke(&owner(), "agent_list", json!({})).await {
        Ok(out) => out.text,
        Err(e) => e.to_string(),
    };
    let bindings = state.store.list_bindings().await.unwrap_or_default();
    let rows: String = bindings
        .iter()
        .map(|(chat, agent)| {
            format!(
                "<tr class=\"binding\"><td>{}</td><td>{}</td></tr>",
                esc(&chat.to_string()),
                esc(agent)
            )
        })
        .collect();
    let bindings = if rows.is_empty() {
        "<p>No chat is bound; every chat talks to its bot's default agent (Operator unless set).</p>"
            .to_string()
    } else {
        format!("<table><tr><th>chat</th><th>agent</th></tr>{rows}</table>")
    };
    let create = form(
        "agent_create",
        "Create an agent",
        &[
            field("name", "name"),
            field("role", "what it is for"),
            field("model", "model (default if empty)"),
            field("runtime", "runtime: builtin, claude-code or codex"),
            Field {
                name: "persona",
                label: "persona",
                input: "textarea",
            },
        ],
        &[],
    );
    let delete = form(
        "agent_delete",
        "Delete an agent",
        &[field("name", "name")],
        &[],
    );
    page(
        "Agents",
        &format!(
            "<pre>{}</pre><h2>Bindings</h2>{bindings}{create}{delete}",
            esc(&text)
        ),
    )
}
