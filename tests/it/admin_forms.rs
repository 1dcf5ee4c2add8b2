//! The admin page changes things: forms run operations (typed by their schemas, same-origin
//! only), API keys are created and revoked from the page, and the activity feed is filtered by
//! role and pushed live over server-sent events, resumable by entry id.

use std::time::Duration;

use operator::domain::ActorRole;
use operator::store::NewActivity;
use reqwest::StatusCode;

use crate::admin::{TOKEN, api_get, client, login, page_text, with_session};
use crate::support::inproc::{core, serve};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn forms_run_operations_and_manage_api_keys() {
    let world = core(None, |_| {}).await;
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = client();
    let origin = format!("http://{}", served.addr);
    let session = login(&http, &served.url("/login"), &origin).await;
    let post = |path: &str, form: &[(&str, &str)], origin: &str| {
        http.post(served.url(path))
            .header("Cookie", &session)
            .header("Origin", origin)
            .form(form)
            .send()
    };

    // A secret added with the page's form: listed by name, never by value.
    let added = post(
        "/do/secret_create",
        &[
            ("name", "GH_TOKEN"),
            ("value", "s3cr3t-value-123"),
            ("global", "true"),
            ("back", "/secrets"),
        ],
        &origin,
    )
    .await
    .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let added = added.text().await.unwrap();
    assert!(
        added.contains("Done") && added.contains("href=\"/secrets\""),
        "{added}"
    );
    let secrets = page_text(&http, &served.url("/secrets"), &session).await;
    assert!(secrets.contains("GH_TOKEN"), "{secrets}");
    assert!(!secrets.contains("s3cr3t-value-123"), "{secrets}");
    assert!(
        secrets.contains("action=\"/do/secret_delete\"")
            && secrets.contains("data-confirm=\"Delete the secret GH_TOKEN?"),
        "{secrets}"
    );
    // The same form from another origin is refused, and changes nothing.
    let forged = post(
        "/do/secret_delete",
        &[("name", "GH_TOKEN")],
        "https://evil.example",
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let deleted = post("/do/secret_delete", &[("name", "GH_TOKEN")], &origin)
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let secrets = page_text(&http, &served.url("/secrets"), &session).await;
    assert!(!secrets.contains("GH_TOKEN"), "{secrets}");

    // An automation added with the form: its next runs, its buttons and its (empty) history.
    let added = post(
        "/do/automation_create",
        &[
            ("name", "digest"),
            ("cron", "0 7 * * *"),
            ("timezone", "Europe/Berlin"),
            ("prompt", "Summarize the repo"),
            ("back", "/automations"),
        ],
        &origin,
    )
    .await
    .unwrap();
    assert_eq!(
        added.status(),
        StatusCode::OK,
        "{}",
        added.text().await.unwrap()
    );
    let page = page_text(&http, &served.url("/automations"), &session).await;
    assert!(
        page.contains("digest (on)") && page.contains("next:"),
        "{page}"
    );
    assert!(
        page.contains("action=\"/do/automation_run\"")
            && page.contains("History: digest")
            && page.contains("last 0 run(s)"),
        "{page}"
    );

    // Bad input is named; unknown operations are said to be unknown.
    let bad = post(
        "/do/instance_create",
        &[("name", "web"), ("memory_mb", "lots")],
        &origin,
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad = bad.text().await.unwrap();
    assert!(bad.contains("memory_mb must be a whole number"), "{bad}");
    let unknown = post("/do/launch_missiles", &[], &origin).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let missing = post("/do/automation_run", &[("name", "nope")], &origin)
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // An API key created on the page is shown once, works, and stops working when revoked.
    let created = post("/keys/new", &[("name", "deploy")], &origin)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = created
        .split("<pre id=\"new-key\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no key shown: {created}"))
        .to_string();
    assert!(key.starts_with("opk_"), "{key}");
    let agents = served.url("/api/agents");
    assert_eq!(api_get(&http, &agents, &key).await.status(), StatusCode::OK);
    let keys = page_text(&http, &served.url("/keys"), &session).await;
    assert!(keys.contains("deploy") && !keys.contains(&key), "{keys}");
    let id = keys
        .split("action=\"/keys/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let revoked = post(&format!("/keys/{id}/revoke"), &[], &origin)
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        api_get(&http, &agents, &key).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The feed by role: the owner's changes are there; no agent acted.
    let owner = with_session(
        &http,
        &served.url("/activity?role=owner&format=jsonl"),
        &session,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        owner.contains("op.secret_create") && owner.contains("api_key.created"),
        "{owner}"
    );
    let agent = with_session(
        &http,
        &served.url("/activity?role=agent&format=jsonl"),
        &session,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(agent.is_empty(), "{agent}");
    let wrong = with_session(&http, &served.url("/activity?role=boss"), &session).await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
}

/// Reads a server-sent event stream until `needle` has arrived; returns all read so far.
async fn read_until(body: &mut reqwest::Response, seen: &mut String, needle: &str) {
    tokio::time::timeout(WAIT, async {
        while !seen.contains(needle) {
            match body.chunk().await.unwrap() {
                Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                None => panic!("the stream ended before {needle:?}: {seen}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}: {seen}"));
}

fn note(kind: &str, role: ActorRole, summary: &str) -> NewActivity {
    NewActivity {
        kind: kind.into(),
        actor: "test".into(),
        role: Some(role),
        summary: summary.into(),
        ..NewActivity::default()
    }
}

#[tokio::test]
async fn the_feed_is_pushed_live_filtered_and_resumed_by_id() {
    let world = core(None, |_| {}).await;
    let store = world.core.store.clone();
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = client();
    let origin = format!("http://{}", served.addr);
    let session = login(&http, &served.url("/login"), &origin).await;

    // No session, no stream.
    let anonymous = http
        .get(served.url("/activity/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);

    store.record(note("test.one", ActorRole::Owner, "first"));
    let mut stream = with_session(
        &http,
        &served.url("/activity/stream?kind=test.&role=owner&after=0"),
        &session,
    )
    .await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    // What was written before the stream opened comes first.
    read_until(&mut stream, &mut seen, "\"first\"").await;
    // Then entries as they are written; another role's entry is held back.
    store.record(note("test.two", ActorRole::Agent, "by an agent"));
    store.record(note("test.three", ActorRole::Owner, "second"));
    read_until(&mut stream, &mut seen, "\"second\"").await;
    assert!(!seen.contains("by an agent"), "{seen}");
    let first_id = seen
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();

    // A reconnecting browser sends the last id it saw: only what came after it is sent.
    let mut resumed = http
        .get(served.url("/activity/stream?kind=test.&role=owner"))
        .header("Cookie", &session)
        .header("Last-Event-ID", &first_id)
        .send()
        .await
        .unwrap();
    let mut again = String::new();
    read_until(&mut resumed, &mut again, "\"second\"").await;
    assert!(!again.contains("\"first\""), "{again}");

    // Logging out ends the stream at its next entry.
    let out = http
        .post(served.url("/logout"))
        .header("Cookie", &session)
        .header("Origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    store.record(note("test.four", ActorRole::Owner, "after logout"));
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream goes on after logout: {seen}");
    assert!(!seen.contains("after logout"), "{seen}");
}

/// The backups page lists the archives in the backup directory, newest first, and downloads
/// one; a name it did not list (a path outside it) is not served.
#[tokio::test]
async fn the_backups_page_lists_and_downloads_archives() {
    let world = core(None, |_| {}).await;
    let dir = world.core.backups_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in [
        ("operator-backup-20261201-030000-000.tar.gz", "older"),
        ("operator-backup-20261202-030000-000.tar.gz", "newer"),
        ("notes.txt", "not a backup"),
    ] {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = client();
    let origin = format!("http://{}", served.addr);
    let session = login(&http, &served.url("/login"), &origin).await;
    let text = page_text(&http, &served.url("/backups"), &session).await;
    let newer = text.find("operator-backup-20261202").expect(&text);
    let older = text.find("operator-backup-20261201").expect(&text);
    assert!(newer < older, "newest first: {text}");
    assert!(!text.contains("notes.txt"), "{text}");
    let got = with_session(
        &http,
        &served.url("/backups/operator-backup-20261202-030000-000.tar.gz"),
        &session,
    )
    .await;
    assert_eq!(got.status(), StatusCode::OK);
    assert!(
        got.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("operator-backup-20261202")
    );
    assert_eq!(got.text().await.unwrap(), "newer");
    for refused in ["notes.txt", "..%2Foperator.db", "%2E%2E%2Fmaster.key"] {
        let got = with_session(&http, &served.url(&format!("/backups/{refused}")), &session).await;
        assert_eq!(got.status(), StatusCode::NOT_FOUND, "{refused}");
    }
    // Without a session: the login page, not the archive.
    let anonymous = http
        .get(served.url("/backups/operator-backup-20261202-030000-000.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_ne!(anonymous.status(), StatusCode::OK);
}

/// The usage page draws cost per day as a server-rendered SVG chart and lists the last seven
/// days by agent and by model, from the usage records.
#[tokio::test]
async fn the_usage_page_charts_cost_per_day_from_the_records() {
    let world = core(None, |_| {}).await;
    for (agent, model, cost) in [
        ("scout", "gpt-4o", 0.25),
        ("scout", "gpt-4o", 0.5),
        ("clerk", "mystery", 1.0),
    ] {
        world
            .core
            .store
            .record_usage(&operator::store::NewUsage {
                at: operator::domain::now_millis(),
                agent: agent.into(),
                source: "chat".into(),
                provider: "default".into(),
                model: model.into(),
                input_tokens: 100,
                output_tokens: 10,
                cost_usd: cost,
                estimated: model == "mystery",
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = client();
    let origin = format!("http://{}", served.addr);
    let session = login(&http, &served.url("/login"), &origin).await;
    let text = page_text(&http, &served.url("/usage"), &session).await;
    assert!(text.contains("<svg"), "{text}");
    assert_eq!(text.matches("<rect class=\"day\"").count(), 14, "{text}");
    assert!(text.contains("max $1.7500/day"), "{text}");
    assert!(
        text.contains("<td>scout</td><td>$0.7500</td><td>2</td>"),
        "{text}"
    );
    assert!(
        text.contains("<td>clerk</td><td>$1.0000 (estimated)</td>"),
        "{text}"
    );
    assert!(text.contains("<td>default/gpt-4o</td>"), "{text}");
}
