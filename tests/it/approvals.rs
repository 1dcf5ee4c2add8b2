//! Approvals in the chat: a model's call of an operation that needs an owner's yes waits for a
//! button press (or `/approve`, `/deny`, `POST /api/approvals/<id>`), runs once when approved,
//! never when denied, timed out or left waiting by a stopped process.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::llm::tool_results;
use crate::support::process::stop;
use crate::support::telegram::FakeTelegram;
use crate::support::{FakeLlm, Vendor, World};

const WAIT: Duration = Duration::from_secs(30);
const OWNER: u64 = 111;
const MEMBER: u64 = 222;
const GROUP: i64 = -100_777;

fn world(llm: &FakeLlm, tg: &FakeTelegram, extra: &str) -> World {
    World::new(
        Some(llm),
        &tg.config(&format!(
            "owners = [{OWNER}]\nstreaming = \"off\"\ngroup_policy = \"open\"\nrequire_mention = false\n{extra}"
        )),
    )
}

/// The agent to delete exists first (made through the console, which shares the state).
async fn with_agent(llm: &FakeLlm, world: &World, name: &str) {
    llm.reply_tool_calls(&[("c0", "agent_create", &json!({ "name": name }).to_string())]);
    llm.reply_text("Made it.");
    let out = world.chat(&["make an agent"]).await;
    assert!(out.stdout.contains("Made it."), "{out:?}");
}

/// Waits for the request's message with its buttons; returns (message id, request code).
async fn request(tg: &FakeTelegram, chat: i64, n: usize) -> (i64, String) {
    assert!(
        tg.wait_until(WAIT, |_| tg
            .with_buttons()
            .iter()
            .filter(|(c, _, _)| *c == chat)
            .count()
            >= n)
            .await,
        "no request with buttons in {chat}: {:?}",
        tg.calls_of("sendMessage")
    );
    let (_, id, body) = tg
        .with_buttons()
        .into_iter()
        .filter(|(c, _, _)| *c == chat)
        .nth(n - 1)
        .unwrap();
    let data = body["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_string();
    let code = data.strip_prefix("approve:").unwrap().to_string();
    assert_eq!(
        body["reply_markup"]["inline_keyboard"][0][1]["callback_data"],
        format!("deny:{code}")
    );
    (id, code)
}

fn answered_presses(tg: &FakeTelegram) -> Vec<String> {
    tg.calls_of("answerCallbackQuery")
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Approved by the owner's button: the operation runs once, even when the button is pressed
/// twice; the request's message says who decided; the model hears it was approved.
#[tokio::test]
async fn an_owner_approves_with_the_button_and_it_runs_once() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    with_agent(&llm, &world, "scout").await;
    llm.reply_tool_calls(&[("c1", "agent_delete", r#"{"name":"scout"}"#)]);
    llm.reply_text("Scout is gone.");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "delete scout");
    let (message, code) = request(&tg, OWNER as i64, 1).await;
    let shown = tg.sent_to(OWNER as i64);
    assert!(
        shown
            .iter()
            .any(|s| s.contains("delete agent scout") && s.contains(&code)),
        "{shown:?}"
    );
    tg.press(OWNER as i64, OWNER, message, &format!("approve:{code}"));
    tg.press(OWNER as i64, OWNER, message, &format!("approve:{code}"));
    let done = tg
        .wait_until(WAIT, |_| {
            tg.sent_to(OWNER as i64)
                .iter()
                .any(|s| s == "Scout is gone.")
                && answered_presses(&tg).len() == 2
        })
        .await;
    let log = stop(daemon).await;
    assert!(done, "{:?}\n{log}", tg.sent_to(OWNER as i64));
    // The request's message now says who approved it.
    let shown = tg.sent_to(OWNER as i64);
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("✅ Approved by") && s.contains("delete agent scout")),
        "{shown:?}"
    );
    let presses = answered_presses(&tg);
    assert!(presses[0].contains("Approved"), "{presses:?}");
    assert!(presses[1].contains("already approved"), "{presses:?}");
    let requests = llm.completions();
    let results = tool_results(&requests.last().unwrap().body);
    assert!(
        results.last().unwrap().contains("(approved by"),
        "{results:?}"
    );
    // It ran exactly once: the agent is gone, and one delete is in the feed.
    let store = operator::store::Store::open(&world.path().join("state"))
        .await
        .unwrap();
    assert!(store.agent("scout").await.is_err());
    let deletes = store
        .activity(&operator::store::ActivityFilter {
            limit: 200,
            kind_prefix: Some("op.agent_delete".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await;
    assert_eq!(deletes.len(), 1, "{deletes:?}");
}

/// Denied: nothing runs and the model hears who denied it. A member's press is refused
/// visibly and decides nothing.
#[tokio::test]
async fn a_member_cannot_decide_and_an_owner_denies() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    with_agent(&llm, &world, "keeper").await;
    llm.reply_tool_calls(&[("c1", "agent_delete", r#"{"name":"keeper"}"#)]);
    llm.reply_text("Understood, keeper stays.");
    let daemon = world.daemon(&[]);
    tg.group(GROUP, OWNER, "delete keeper");
    let (message, code) = request(&tg, GROUP, 1).await;
    tg.press(GROUP, MEMBER, message, &format!("approve:{code}"));
    let refused = tg
        .wait_until(WAIT, |_| !answered_presses(&tg).is_empty())
        .await;
    assert!(refused, "{}", stop(daemon).await);
    assert!(
        answered_presses(&tg)[0].contains("only an owner can approve this"),
        "{:?}",
        answered_presses(&tg)
    );
    tg.press(GROUP, OWNER, message, &format!("deny:{code}"));
    let done = tg
        .wait_until(WAIT, |_| {
            tg.sent_to(GROUP)
                .iter()
                .any(|s| s == "Understood, keeper stays.")
        })
        .await;
    let log = stop(daemon).await;
    assert!(done, "{:?}\n{log}", tg.sent_to(GROUP));
    assert!(
        tg.sent_to(GROUP)
            .iter()
            .any(|s| s.starts_with("❌ Denied by")),
        "{:?}",
        tg.sent_to(GROUP)
    );
    let results = tool_results(&llm.completions().last().unwrap().body);
    assert!(
        results.last().unwrap().contains("not run: denied by"),
        "{results:?}"
    );
    let store = operator::store::Store::open(&world.path().join("state"))
        .await
        .unwrap();
    assert!(
        store.agent("keeper").await.is_ok(),
        "the agent is still there"
    );
    store.close().await;
}

/// Nobody decides: the request times out, counts as denied, and its message says so. Typed
/// commands work too: `/approve` of the timed-out request is told it is over.
#[tokio::test]
async fn an_undecided_request_times_out_as_denied() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "[approvals]\ntimeout_secs = 1\n");
    with_agent(&llm, &world, "idle").await;
    llm.reply_tool_calls(&[("c1", "agent_delete", r#"{"name":"idle"}"#)]);
    llm.reply_text("Nobody said yes, so idle stays.");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "delete idle");
    let (_, code) = request(&tg, OWNER as i64, 1).await;
    let done = tg
        .wait_until(WAIT, |_| {
            tg.sent_to(OWNER as i64)
                .iter()
                .any(|s| s == "Nobody said yes, so idle stays.")
        })
        .await;
    assert!(done, "{}", stop(daemon).await);
    tg.direct(OWNER, &format!("/approve {code}"));
    let told = tg
        .wait_until(WAIT, |_| {
            tg.sent_to(OWNER as i64)
                .iter()
                .any(|s| s.contains("already expired"))
        })
        .await;
    let log = stop(daemon).await;
    assert!(told, "{:?}\n{log}", tg.sent_to(OWNER as i64));
    assert!(
        tg.sent_to(OWNER as i64)
            .iter()
            .any(|s| s.starts_with("⌛ Not run (nobody decided in time)")),
        "{:?}",
        tg.sent_to(OWNER as i64)
    );
    let results = tool_results(&llm.completions().last().unwrap().body);
    assert!(results.last().unwrap().contains("timed out"), "{results:?}");
}

/// A request left waiting by a stopped process is expired at the next start, with a word to
/// its chat, and never runs; the interrupted turn resumes and answers once.
#[tokio::test]
async fn a_request_left_by_a_crash_is_expired_and_never_runs() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    with_agent(&llm, &world, "survivor").await;
    llm.reply_tool_calls(&[("c1", "agent_delete", r#"{"name":"survivor"}"#)]);
    let mut daemon = world.daemon(&[]);
    tg.direct(OWNER, "delete survivor");
    let (message, code) = request(&tg, OWNER as i64, 1).await;
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;

    llm.reply_text("It was not deleted; ask me again if you still want that.");
    let daemon = world.daemon(&[]);
    let done = tg
        .wait_until(WAIT, |_| {
            tg.sent_to(OWNER as i64)
                .iter()
                .any(|s| s.starts_with("It was not deleted"))
        })
        .await;
    assert!(
        done,
        "{:?}\n{}",
        tg.sent_to(OWNER as i64),
        stop(daemon).await
    );
    // A late press of the old button changes nothing.
    tg.press(OWNER as i64, OWNER, message, &format!("approve:{code}"));
    tg.wait_until(WAIT, |_| !answered_presses(&tg).is_empty())
        .await;
    let log = stop(daemon).await;
    let shown = tg.sent_to(OWNER as i64);
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("⌛ Not run: operator stopped")),
        "{shown:?}\n{log}"
    );
    assert!(
        answered_presses(&tg)[0].contains("already expired"),
        "{:?}",
        answered_presses(&tg)
    );
    let store = operator::store::Store::open(&world.path().join("state"))
        .await
        .unwrap();
    assert!(store.agent("survivor").await.is_ok());
    store.close().await;
}

/// The console asks y/n; a script answers on its next line.
#[tokio::test]
async fn the_console_asks_and_y_approves() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[("c0", "agent_create", r#"{"name":"temp"}"#)]);
    llm.reply_text("Made it.");
    llm.reply_tool_calls(&[("c1", "agent_delete", r#"{"name":"temp"}"#)]);
    llm.reply_text("Deleted temp.");
    let world = World::new(Some(&llm), "");
    let out = world.chat(&["make temp", "delete temp", "y"]).await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("Approve? y/n"), "{}", out.stdout);
    assert!(out.stdout.contains("✅ Approved by"), "{}", out.stdout);
    assert!(out.stdout.contains("Deleted temp."), "{}", out.stdout);
}

/// Discord: the request carries Approve / Deny buttons; a member's press is answered only to
/// them and decides nothing; the owner's press runs the operation once and the request's
/// message says so, without its buttons.
#[tokio::test]
async fn discord_buttons_decide_and_members_are_told_no() {
    use crate::support::discord::FakeDiscord;
    const ROOM: u64 = 6002;
    const GUILD: u64 = 6001;
    const DISCORD_OWNER: u64 = 4242;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let discord = FakeDiscord::start().await;
    let world = World::new(
        Some(&llm),
        &discord.config(&format!(
            "owners = [{DISCORD_OWNER}]\nstreaming = \"off\"\ngroup_policy = \"open\"\nrequire_mention = false\n"
        )),
    );
    with_agent(&llm, &world, "courier").await;
    llm.reply_tool_calls(&[("c1", "agent_delete", r#"{"name":"courier"}"#)]);
    llm.reply_text("Courier deleted.");
    let daemon = world.daemon(&[]);
    assert!(
        discord.wait_until(WAIT, || discord.identifies() >= 1).await,
        "{}",
        stop(daemon).await
    );
    discord.message(ROOM, Some(GUILD), DISCORD_OWNER, "delete courier");
    let asked = discord
        .wait_until(WAIT, || !discord.with_buttons(ROOM).is_empty())
        .await;
    assert!(asked, "{:?}\n{}", discord.texts(ROOM), stop(daemon).await);
    let (message, body) = discord.with_buttons(ROOM)[0].clone();
    let buttons = &body["components"][0]["components"];
    let approve = buttons[0]["custom_id"].as_str().unwrap().to_string();
    assert!(approve.starts_with("approve:"), "{body}");
    assert!(
        buttons[1]["custom_id"]
            .as_str()
            .unwrap()
            .starts_with("deny:")
    );
    assert!(
        body["content"]
            .as_str()
            .unwrap()
            .contains("delete agent courier")
    );

    let member_press = discord.press(ROOM, Some(GUILD), 77, message, &approve);
    let told = discord
        .wait_until(WAIT, || {
            discord
                .interaction_calls(member_press)
                .iter()
                .any(|(method, kind, _)| method == "POST" && kind == "followup")
        })
        .await;
    assert!(told, "{}", stop(daemon).await);
    let calls = discord.interaction_calls(member_press);
    let (_, _, follow) = calls.iter().find(|(_, k, _)| k == "followup").unwrap();
    assert!(
        follow["content"]
            .as_str()
            .unwrap()
            .contains("only an owner"),
        "{follow}"
    );
    assert_eq!(
        follow["flags"].as_u64().unwrap_or(0) & 64,
        64,
        "ephemeral: {follow}"
    );
    assert!(
        calls.iter().any(|(_, k, _)| k == "callback"),
        "acknowledged: {calls:?}"
    );

    discord.press(ROOM, Some(GUILD), DISCORD_OWNER, message, &approve);
    let done = discord
        .wait_until(WAIT, || {
            discord.texts(ROOM).iter().any(|t| t == "Courier deleted.")
        })
        .await;
    let log = stop(daemon).await;
    assert!(done, "{:?}\n{log}", discord.texts(ROOM));
    assert!(
        discord
            .texts(ROOM)
            .iter()
            .any(|t| t.starts_with("✅ Approved by") && t.contains("courier")),
        "{:?}",
        discord.texts(ROOM)
    );
    let edits = discord.edits(ROOM);
    assert!(
        edits
            .iter()
            .any(|e| e["components"] == serde_json::json!([])),
        "buttons removed: {edits:?}"
    );
}

/// `/api/chat` streams the request as an `approval` event; `POST /api/approvals/<id>` decides
/// it (once: a second decision is told it is over); a malformed decision is refused.
#[tokio::test]
async fn the_api_streams_a_request_and_decides_it() {
    use crate::support::inproc::{core, serve};
    use operator::domain::Caller;
    use operator::ops::Invocation;

    const TOKEN: &str = "approvals-api-token";
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[("c1", "secret_delete", r#"{"name":"OLD_KEY"}"#)]);
    llm.reply_text("OLD_KEY is deleted.");
    let world = core(Some(&llm), |_| {}).await;
    world
        .core
        .ops
        .invoke(
            &Invocation::new(Caller::owner("test")),
            "secret_create",
            json!({ "name": "OLD_KEY", "value": "old-value-1234" }),
        )
        .await
        .unwrap();
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = reqwest::Client::new();
    let mut stream = http
        .post(served.url("/api/chat"))
        .bearer_auth(TOKEN)
        .header("Accept", "text/event-stream")
        .json(&json!({ "message": "delete OLD_KEY", "conversation": "ops-2" }))
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    let read = tokio::time::timeout(WAIT, async {
        while !body.contains("event: approval") || !body.contains("\n\n") {
            let Some(chunk) = stream.chunk().await.unwrap() else {
                break;
            };
            body.push_str(&String::from_utf8_lossy(&chunk));
            if body.contains("event: approval") && body.ends_with("\n\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{body}");
    let data = body
        .split("event: approval\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap();
    let event: Value = serde_json::from_str(data).unwrap();
    let id = event["id"].as_str().unwrap().to_string();
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .contains("delete secret OLD_KEY"),
        "{event}"
    );

    let bad = http
        .post(served.url(&format!("/api/approvals/{id}")))
        .bearer_auth(TOKEN)
        .json(&json!({ "yes": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "{:?}", bad.text().await);
    let decided = http
        .post(served.url(&format!("/api/approvals/{id}")))
        .bearer_auth(TOKEN)
        .json(&json!({ "approve": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 200);
    let text: Value = decided.json().await.unwrap();
    assert!(
        text["text"].as_str().unwrap().starts_with("✅ Approved"),
        "{text}"
    );
    let rest = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(rest.is_ok(), "{body}");
    assert!(body.contains("OLD_KEY is deleted."), "{body}");
    assert!(body.contains("event: decided"), "{body}");
    let again: Value = http
        .post(served.url(&format!("/api/approvals/{id}")))
        .bearer_auth(TOKEN)
        .json(&json!({ "approve": false }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        again["text"].as_str().unwrap().contains("already approved"),
        "{again}"
    );
    let secrets = world
        .core
        .ops
        .invoke(
            &Invocation::new(Caller::owner("test")),
            "secret_list",
            json!({}),
        )
        .await
        .unwrap();
    assert!(!secrets.text.contains("OLD_KEY"), "{}", secrets.text);
}
