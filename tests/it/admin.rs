//! The admin page's guard: login with the admin token, the session cookie, the rate limit on
//! login attempts, the origin check, and forwarded-for headers that never stand in for auth.

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::support::inproc::{core, serve};

pub(crate) const TOKEN: &str = "admin-token-for-the-page";

/// A GET with the session cookie.
pub(crate) async fn with_session(
    http: &reqwest::Client,
    url: &str,
    session: &str,
) -> reqwest::Response {
    http.get(url)
        .header("Cookie", session)
        .send()
        .await
        .unwrap()
}

/// A GET under `/api/` with a bearer token.
pub(crate) async fn api_get(http: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    http.get(url).bearer_auth(token).send().await.unwrap()
}

/// The body of a page fetched with the session cookie.
pub(crate) async fn page_text(http: &reqwest::Client, url: &str, session: &str) -> String {
    with_session(http, url, session).await.text().await.unwrap()
}

/// One login attempt from `origin`.
async fn post_login(
    http: &reqwest::Client,
    url: &str,
    origin: &str,
    token: &str,
) -> reqwest::Response {
    http.post(url)
        .header("Origin", origin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// Logs in and returns the session cookie (`name=value`).
pub(crate) async fn login(http: &reqwest::Client, url: &str, origin: &str) -> String {
    let r = post_login(http, url, origin, TOKEN).await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn pages_need_a_login_that_is_rate_limited_and_same_origin() {
    let world = core(None, |_| {}).await;
    let hash = operator::http::api::token_hash(TOKEN);
    let served = serve(&world.core, Some(hash)).await;
    let http = client();
    let origin = format!("http://{}", served.addr);

    // No cookie: sent to the login page, even from 127.0.0.1 with forwarded-for headers.
    for path in ["/", "/instances", "/activity"] {
        let r = http
            .get(served.url(path))
            .header("X-Forwarded-For", "127.0.0.1")
            .header("X-Real-IP", "127.0.0.1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()["location"], "/login");
    }
    // A login from another origin is refused before the token is even looked at.
    let cross = post_login(&http, &served.url("/login"), "https://evil.example", TOKEN).await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // A wrong token is rejected.
    let wrong = post_login(&http, &served.url("/login"), &origin, "guess").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // The right one sets an HttpOnly, SameSite=Strict cookie.
    let ok = post_login(&http, &served.url("/login"), &origin, TOKEN).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = with_session(&http, &served.url("/"), &session).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("operator 0."));
    // A state-changing request with the cookie but from another origin is refused.
    let forged = http
        .post(served.url("/logout"))
        .header("Cookie", &session)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Activity exports as JSON lines.
    let export = with_session(&http, &served.url("/activity?format=jsonl"), &session).await;
    assert_eq!(export.status(), StatusCode::OK);
    // The last minutes of the feed, live: the table names the stream it is pushed from, and
    // the page allows only this origin's script.
    let live = with_session(&http, &served.url("/activity?minutes=5&kind=op."), &session).await;
    let policy = live.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let live = live.text().await.unwrap();
    assert!(
        live.contains("data-stream=\"/activity/stream?kind=op.&amp;minutes=5&amp;after=")
            && live.contains("value=\"op.\""),
        "{live}"
    );
    // Two attempts so far (the cross-origin one never got that far); three more are allowed,
    // the sixth is refused even with the right token.
    for _ in 0..3 {
        let r = post_login(&http, &served.url("/login"), &origin, "guess").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let sixth = post_login(&http, &served.url("/login"), &origin, TOKEN).await;
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    // Logging out ends the session.
    let out = http
        .post(served.url("/logout"))
        .header("Cookie", &session)
        .header("Origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = with_session(&http, &served.url("/"), &session).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn api_keys_are_shown_once_work_and_stop_working_when_revoked() {
    let world = core(None, |_| {}).await;
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = client();
    let created: serde_json::Value = http
        .post(served.url("/api/keys"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "backup script" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_i64().unwrap();
    // The key works for the API, is listed without its value, and cannot manage keys.
    let agents = api_get(&http, &served.url("/api/agents"), &key).await;
    assert_eq!(agents.status(), StatusCode::OK);
    let list = api_get(&http, &served.url("/api/keys"), TOKEN)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("backup script") && !list.contains(&key),
        "{list}"
    );
    let by_key = api_get(&http, &served.url("/api/keys"), &key).await;
    assert_eq!(by_key.status(), StatusCode::UNAUTHORIZED);
    // Revoked: refused on the next request.
    let revoked = http
        .delete(served.url(&format!("/api/keys/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let after = api_get(&http, &served.url("/api/agents"), &key).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // The metrics show the outbox.
    let metrics = http
        .get(served.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("operator_outbox_depth 0"), "{metrics}");
}

#[tokio::test]
async fn the_page_chats_with_operator_and_lists_the_areas() {
    use crate::support::{FakeLlm, Vendor};
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text("All quiet on the fleet.");
    let world = core(Some(&llm), |_| {}).await;
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = client();
    let origin = format!("http://{}", served.addr);
    let session = login(&http, &served.url("/login"), &origin).await;
    let sent = http
        .post(served.url("/chat"))
        .header("Cookie", &session)
        .header("Origin", &origin)
        .form(&[("message", "how is the fleet?")])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let page = page_text(&http, &served.url("/chat"), &session).await;
    assert!(
        page.contains("how is the fleet?") && page.contains("All quiet on the fleet."),
        "{page}"
    );
    // The agents page shows which chat talks to which agent.
    world
        .core
        .store
        .bind(&operator::domain::ChatRef::new("telegram:1", "42"), "scout")
        .await
        .unwrap();
    let agents = page_text(&http, &served.url("/agents"), &session).await;
    assert!(
        agents.contains("telegram:1/42") && agents.contains("scout"),
        "{agents}"
    );
    for path in [
        "/agents",
        "/skills",
        "/secrets",
        "/automations",
        "/webhooks",
    ] {
        let r = with_session(&http, &served.url(path), &session).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn api_chat_streams_its_events_and_continues_by_id() {
    use crate::support::{FakeLlm, Vendor};
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[("c1", "agent_list", "{}")]);
    llm.reply_text("No agents yet.");
    llm.reply_text("Still none.");
    let world = core(Some(&llm), |_| {}).await;
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = client();
    let body = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        http.post(served.url("/api/chat"))
            .bearer_auth(TOKEN)
            .header("Accept", "text/event-stream")
            .json(&serde_json::json!({ "message": "what agents are there?", "conversation": "ops-1" }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the stream ends after the reply");
    let typing = body.find("event: typing").expect(&body);
    let progress = body.find("event: progress").expect(&body);
    let reply = body.find("event: reply").expect(&body);
    assert!(typing < progress && progress < reply, "{body}");
    // The reply's text streams as `delta` events before the reply itself.
    let delta = body.find("event: delta").expect(&body);
    assert!(progress < delta && delta < reply, "{body}");
    assert!(body.contains(r#""text":"No agents"#), "{body}");
    assert!(body.contains("running agent_list"), "{body}");
    assert!(
        body.contains(r#""conversation":"ops-1""#) && body.contains("No agents yet."),
        "{body}"
    );
    // The same conversation goes on, as plain JSON this time.
    let next: serde_json::Value = http
        .post(served.url("/api/chat"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "message": "and now?", "conversation": "ops-1" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["reply"], "Still none.");
    let history = llm.completions().last().unwrap().body.to_string();
    assert!(history.contains("what agents are there?"), "{history}");
}
