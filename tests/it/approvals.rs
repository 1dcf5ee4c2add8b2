//! Approvals in the chat: a model's call of an operation that needs an owner's yes waits for a
//! button press (or `/approve`, `/deny`, `POST /api/approvals/<id>`), runs once when approved,
//! never when denied, timed out or left waiting by a stopped process.

use std::time::Duration;

use serde_json::{Value, json};

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

/// The tool results the model saw in a request.
fn tool_results(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
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
