//! Live conversations through the real binary and the fake Bot API: bursts that are never
//! bounced, crashes that store nothing twice, messages that join the running turn (steer) or
//! wait for the next one (collect), and a quick idle stop.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Child;

use crate::support::discord::FakeDiscord;
use crate::support::process::{stop, terminate};
use crate::support::telegram::FakeTelegram;
use crate::support::{FakeLlm, Vendor, World};

const WAIT: Duration = Duration::from_secs(30);
const OWNER: u64 = 111;

fn world(llm: &FakeLlm, telegram: &FakeTelegram, extra: &str) -> World {
    let owners: Vec<String> = (0..10).map(|i| (OWNER + i).to_string()).collect();
    World::new(
        Some(llm),
        &telegram.config(&format!(
            "owners = [{}]\nmessages_per_second = 10000.0\nchat_messages_per_second = 10000.0\n{extra}",
            owners.join(", ")
        )),
    )
}

async fn kill(mut daemon: Child) {
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;
}

/// The user messages of one model request, in order.
fn user_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] == "user")
                .filter_map(|m| m["content"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Ten owners send twenty messages each in bursts while the model takes a while per answer,
/// and the daemon is killed twice meanwhile: every message gets exactly one answer, in order,
/// none is turned away, and the model never sees a message twice.
#[tokio::test]
async fn a_burst_with_two_kills_is_answered_once_each_and_stored_once() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo_after(Duration::from_millis(150));
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let owners: Vec<u64> = (0..10).map(|i| OWNER + i).collect();
    let mut expected: HashMap<u64, Vec<String>> = HashMap::new();
    let mut daemon = world.daemon(&[]);
    for burst in 0..4 {
        for owner in &owners {
            for i in 0..5 {
                let text = format!("b{owner}-{burst}-{i}");
                tg.direct(*owner, &text);
                expected
                    .entry(*owner)
                    .or_default()
                    .push(format!("echo: {text}"));
            }
        }
        if burst == 1 || burst == 2 {
            // Killed in the middle of the work: turns are running, messages are waiting.
            // Telegram stops taking answers first, so the kill does not land in the one
            // window no daemon can close (an answer Telegram took just before the process
            // died, before its outbox row was removed).
            let seen = llm.completions().len();
            llm.wait_for_completions(seen + 3, WAIT).await;
            tg.hold_sends_after(tg.accepted_sends());
            tokio::time::sleep(Duration::from_millis(300)).await;
            kill(daemon).await;
            tg.unhold();
            daemon = world.daemon(&[]);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let done = tg.wait_sends(200, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = stop(daemon).await;
    assert!(done, "only {} answers\n{log}", tg.accepted_sends());
    for owner in &owners {
        assert_eq!(
            tg.sent_to(*owner as i64),
            expected[owner],
            "owner {owner}\n{log}"
        );
    }
    assert_eq!(tg.accepted_sends(), 200);
    for request in llm.completions() {
        let users = user_texts(&request.body);
        let mut seen = std::collections::HashSet::new();
        for text in &users {
            assert!(
                seen.insert(text),
                "{text:?} twice in one request: {users:?}"
            );
        }
    }
}

/// `steer`: a message sent while the turn works reaches the model's next request in the same
/// turn, after the tool results, and the one reply answers both messages.
#[tokio::test]
async fn a_message_sent_during_a_turn_steers_it() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls_after(&[("s1", "status", "{}")], Duration::from_millis(800));
    llm.reply_text("Fine, Python it is.");
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "write the script");
    assert!(
        llm.wait_for_completions(1, WAIT).await,
        "{}",
        stop(daemon).await
    );
    tg.direct(OWNER, "no, use Python");
    tg.wait_until(WAIT, |_| answers(&tg, OWNER).len() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = stop(daemon).await;
    assert_eq!(answers(&tg, OWNER), vec!["Fine, Python it is."], "{log}");
    let requests = llm.completions();
    assert_eq!(requests.len(), 2, "{log}");
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "user"],
        "{messages:?}"
    );
    assert_eq!(messages[4]["content"], "no, use Python");
    // Both updates were settled by that one reply: a restart answers nothing again.
    let daemon = world.daemon(&[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = stop(daemon).await;
    assert_eq!(answers(&tg, OWNER).len(), 1, "{log}");
    assert_eq!(llm.completions().len(), 2, "{log}");
}

/// What was sent to a chat besides tool progress lines.
fn answers(tg: &FakeTelegram, chat: u64) -> Vec<String> {
    tg.sent_to(chat as i64)
        .into_iter()
        .filter(|s| !s.starts_with("running "))
        .collect()
}

/// `collect`: messages that arrive while a turn runs wait, then all of them form the next turn.
#[tokio::test]
async fn collected_messages_form_the_next_turn_together() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo_after(Duration::from_millis(700));
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "[operator]\nqueue = \"collect\"\n");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "one");
    assert!(
        llm.wait_for_completions(1, WAIT).await,
        "{}",
        stop(daemon).await
    );
    for text in ["two", "three", "four"] {
        tg.direct(OWNER, text);
    }
    let sent = tg.wait_sent(OWNER as i64, 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let log = stop(daemon).await;
    assert_eq!(
        tg.sent_to(OWNER as i64),
        vec!["echo: one", "echo: two + three + four"],
        "{sent:?}\n{log}"
    );
    assert_eq!(llm.completions().len(), 2, "{log}");
    let daemon = world.daemon(&[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = stop(daemon).await;
    assert_eq!(tg.sent_to(OWNER as i64).len(), 2, "{log}");
}

/// Another person's message in the same group never joins a turn: it runs with its own caller.
#[tokio::test]
async fn commands_and_other_people_wait_for_their_own_turn() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo_after(Duration::from_millis(600));
    let tg = FakeTelegram::start().await;
    let world = world(
        &llm,
        &tg,
        "group_policy = \"open\"\nrequire_mention = false\nstreaming = \"off\"\n[operator]\nqueue = \"collect\"\n",
    );
    let daemon = world.daemon(&[]);
    let group = -100_555;
    tg.group(group, OWNER, "first");
    assert!(
        llm.wait_for_completions(1, WAIT).await,
        "{}",
        stop(daemon).await
    );
    tg.group(group, OWNER, "second");
    tg.group(group, OWNER + 1, "from someone else");
    tg.group(group, OWNER, "third");
    let sent = tg.wait_sent(group, 4, WAIT).await;
    let log = stop(daemon).await;
    assert_eq!(
        sent,
        vec![
            "echo: first",
            "echo: second",
            "echo: from someone else",
            "echo: third"
        ],
        "{log}"
    );
}

/// SIGTERM on an idle daemon with a bot polling: it stops cleanly without waiting out the
/// drain deadline meant for running turns (the time is reported by the foundation bench).
#[tokio::test]
async fn an_idle_daemon_stops_without_waiting_for_turns() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "hello");
    tg.wait_sent(OWNER as i64, 1, WAIT).await;
    let out = terminate(daemon).await;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{log}", out.status);
    assert!(!log.contains("still running"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// A reply long enough to arrive in many pieces.
const STORY: &str = "Once upon a time there was a small daemon that ran on a quiet server \
and answered every message exactly once, never twice, and never lost one.";

/// The texts of the drafts shown in a chat, in order.
fn drafts(tg: &FakeTelegram) -> Vec<Value> {
    tg.calls_of("sendMessageDraft")
}

/// A slow streamed reply in a private chat shows as a growing draft, then arrives as one
/// message: no message is edited, none is sent twice.
#[tokio::test]
async fn a_slow_reply_grows_as_a_draft_then_arrives_once() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.stream_slowly(Duration::from_millis(120));
    llm.reply_text(STORY);
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "tell me a story");
    tg.wait_sent(OWNER as i64, 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stop(daemon).await;
    assert_eq!(tg.sent_to(OWNER as i64), vec![STORY], "{log}");
    assert_eq!(tg.calls_of("sendMessage").len(), 1, "{log}");
    assert!(tg.calls_of("editMessageText").is_empty(), "{log}");
    let drafts = drafts(&tg);
    assert!(drafts.len() >= 2, "{drafts:?}");
    let id = &drafts[0]["draft_id"];
    let mut last = 0;
    for draft in &drafts {
        assert_eq!(&draft["draft_id"], id, "one draft for the whole reply");
        assert_eq!(draft["chat_id"], OWNER);
        let text = draft["text"].as_str().unwrap();
        assert!(STORY.starts_with(text) && text.len() > last, "{drafts:?}");
        last = text.len();
    }
}

/// A Bot API server without drafts (404): the reply grows in one message edited in place,
/// and that message becomes the final answer.
#[tokio::test]
async fn without_drafts_one_message_is_edited_into_the_answer() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.stream_slowly(Duration::from_millis(150));
    llm.reply_text(STORY);
    let tg = FakeTelegram::start().await;
    tg.refuse_drafts();
    let world = world(&llm, &tg, "");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "tell me a story");
    let shown = tg
        .wait_until(WAIT, |_| tg.sent_to(OWNER as i64) == vec![STORY])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stop(daemon).await;
    assert!(shown, "{:?}\n{log}", tg.sent_to(OWNER as i64));
    assert_eq!(tg.calls_of("sendMessage").len(), 1, "{log}");
    let edits = tg.calls_of("editMessageText");
    assert!(edits.len() >= 2, "{edits:?}");
    // The last edit is the answer, as HTML; the ones before are partial plain text.
    assert_eq!(edits.last().unwrap()["parse_mode"], "HTML", "{edits:?}");
    assert!(edits[0]["parse_mode"].is_null(), "{edits:?}");
}

/// A crash while a reply grows in an edited message: after the restart that partial message
/// is deleted and the turn's one answer arrives.
#[tokio::test]
async fn a_partial_message_left_by_a_crash_is_taken_back() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.stream_slowly(Duration::from_millis(250));
    llm.reply_text(STORY);
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "streaming = \"edit\"\n");
    let daemon = world.daemon(&[]);
    tg.direct(OWNER, "tell me a story");
    let partial = tg
        .wait_until(WAIT, |_| !tg.calls_of("editMessageText").is_empty())
        .await;
    assert!(partial, "{}", stop(daemon).await);
    kill(daemon).await;
    assert_ne!(tg.sent_to(OWNER as i64), vec![STORY]);
    let partial_id = tg.calls_of("editMessageText")[0]["message_id"].clone();

    llm.stream_slowly(Duration::ZERO);
    llm.reply_text("The story, told once.");
    let daemon = world.daemon(&[]);
    let answered = tg
        .wait_until(WAIT, |_| {
            tg.sent_to(OWNER as i64) == vec!["The story, told once."]
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stop(daemon).await;
    assert!(answered, "{:?}\n{log}", tg.sent_to(OWNER as i64));
    let deleted = tg.calls_of("deleteMessage");
    assert!(
        deleted.iter().any(|d| d["message_id"] == partial_id),
        "{deleted:?}"
    );
}

/// Discord: one message edited several times as the reply grows, becoming the answer.
#[tokio::test]
async fn discord_shows_a_growing_reply_in_one_edited_message() {
    const DM: u64 = 5001;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.stream_slowly(Duration::from_millis(150));
    llm.reply_text(STORY);
    let discord = FakeDiscord::start().await;
    let world = World::new(Some(&llm), &discord.config("owners = [4242]\n"));
    let daemon = world.daemon(&[]);
    assert!(
        discord.wait_until(WAIT, || discord.identifies() >= 1).await,
        "{}",
        stop(daemon).await
    );
    discord.message(DM, None, 4242, "tell me a story");
    let shown = discord
        .wait_until(WAIT, || discord.texts(DM) == vec![STORY])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stop(daemon).await;
    assert!(shown, "{:?}\n{log}", discord.texts(DM));
    assert_eq!(discord.posted(DM).len(), 1, "{log}");
    let edits = discord.edits(DM);
    assert!(edits.len() >= 2, "{edits:?}");
    for edit in &edits {
        assert_eq!(
            edit["allowed_mentions"]["parse"],
            serde_json::json!([]),
            "{edit}"
        );
    }
}

/// The console prints the reply as it comes: its beginning is on the screen before its end
/// has been written by the model.
#[tokio::test]
async fn the_console_prints_the_reply_as_it_comes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.stream_slowly(Duration::from_millis(200));
    llm.reply_text(STORY);
    let world = World::new(Some(&llm), "");
    let mut child = world.spawn(&["chat"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"tell me a story\n").await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(WAIT, async {
        while !seen.contains("Once upon") {
            let n = stdout.read(&mut buffer).await.unwrap();
            assert!(n > 0, "output ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
    .await;
    assert!(read.is_ok(), "{seen}");
    assert!(!seen.contains("never lost one."), "{seen}");
    drop(stdin);
    let mut rest = String::new();
    let _ = tokio::time::timeout(WAIT, stdout.read_to_string(&mut rest)).await;
    seen.push_str(&rest);
    let _ = child.wait().await;
    assert_eq!(seen.matches(STORY).count(), 1, "{seen}");
}

/// A stream that breaks off half-way is asked for again, and the answer is given once.
#[tokio::test]
async fn a_stream_that_breaks_off_is_retried_into_one_answer() {
    let llm = FakeLlm::start(Vendor::Anthropic).await;
    llm.break_next_stream();
    llm.reply_text(STORY);
    let world = World::new(Some(&llm), "");
    let out = world.chat(&["tell me a story"]).await;
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.matches(STORY).count(), 1, "{}", out.stdout);
    assert_eq!(llm.completions().len(), 2);
    assert_eq!(llm.completions()[0].body["stream"], true);
}
