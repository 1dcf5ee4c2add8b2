//! Telegram, end to end: the real binary and the real teloxide client against a fake Bot API
//! server on 127.0.0.1, with a fake LLM.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Child;

use crate::support::process::{stop, terminate};
use crate::support::telegram::FakeTelegram;
use crate::support::{FakeLlm, Vendor, World};

const WAIT: Duration = Duration::from_secs(30);
const OWNER: u64 = 111;

fn start(world: &World, env: &[(&str, String)]) -> Child {
    world.daemon(env)
}

fn world(llm: &FakeLlm, telegram: &FakeTelegram, extra: &str) -> World {
    World::new(
        Some(llm),
        // Replies arrive whole here; tests/it/live.rs shows them growing.
        &telegram.config(&format!("owners = [{OWNER}]\nstreaming = \"off\"\n{extra}")),
    )
}

#[tokio::test]
async fn owners_talk_to_operator_and_strangers_pair_first() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    // Slow enough that typing shows (a quicker answer needs none).
    llm.echo_after(Duration::from_secs(1));
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let daemon = start(&world, &[]);

    tg.direct(OWNER, "hello there");
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    assert_eq!(sent, vec!["echo: hello there"], "{}", stop(daemon).await);
    // The reply went out with link previews off and as HTML.
    let reply = &tg.calls_of("sendMessage")[0];
    assert_eq!(reply["link_preview_options"]["is_disabled"], json!(true));
    assert_eq!(reply["parse_mode"], json!("HTML"));
    assert!(
        !tg.calls_of("sendChatAction").is_empty(),
        "typing was shown"
    );
    llm.echo();

    // A stranger gets a pairing code, and no model hears them.
    let before = llm.completions().len();
    tg.direct(222, "let me in");
    let sent = tg.wait_sent(222, 1, WAIT).await;
    assert_eq!(sent.len(), 1, "{}", stop(daemon).await);
    let code = sent[0]
        .split("/pair ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a pairing code")
        .to_string();
    assert_eq!(
        llm.completions().len(),
        before,
        "a stranger reached the model"
    );

    // The owner approves; the stranger's next message is answered.
    tg.direct(OWNER, &format!("/pair {code}"));
    let sent = tg.wait_sent(OWNER as i64, 2, WAIT).await;
    assert!(sent[1].contains("Paired User222"), "{sent:?}");
    tg.direct(222, "thanks");
    let sent = tg.wait_sent(222, 2, WAIT).await;
    assert_eq!(sent[1], "echo: thanks", "{}", stop(daemon).await);

    // The menu was registered once; a restart with the same menu does not set it again.
    assert_eq!(tg.calls_of("setMyCommands").len(), 1);
    let menu = &tg.calls_of("setMyCommands")[0]["commands"];
    let names: Vec<&str> = menu
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    for name in [
        "start",
        "help",
        "agents",
        "use",
        "new",
        "status",
        "stop",
        "instances",
        "pair",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    terminate(daemon).await;
    let daemon = start(&world, &[]);
    tg.direct(OWNER, "again");
    let sent = tg.wait_sent(OWNER as i64, 3, WAIT).await;
    assert_eq!(sent[2], "echo: again", "{}", stop(daemon).await);
    assert_eq!(tg.calls_of("setMyCommands").len(), 1);
    stop(daemon).await;
}

#[tokio::test]
async fn groups_answer_only_when_mentioned() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let world = world(
        &llm,
        &tg,
        "group_policy = \"open\"\nrequire_mention = true\n",
    );
    let daemon = start(&world, &[]);
    let group = -100_555;
    tg.group(group, 333, "just chatting among ourselves");
    tg.group(group, 333, "@op_test_bot what time is it");
    let sent = tg.wait_sent(group, 1, WAIT).await;
    // Updates are handled in order, so the first was seen (and ignored) before this answer.
    assert_eq!(
        sent,
        vec!["echo: what time is it"],
        "{}",
        stop(daemon).await
    );
    assert_eq!(llm.completions().len(), 1);
    // A command for another bot is not ours either; one for us is.
    tg.group(group, 333, "/status@some_other_bot");
    tg.group(group, 333, "/help@op_test_bot");
    let sent = tg.wait_sent(group, 2, WAIT).await;
    assert!(sent[1].contains("/help"), "{sent:?}");
    assert_eq!(tg.sent_to(group).len(), 2);
    stop(daemon).await;
}

#[tokio::test]
async fn deliveries_wait_out_429_split_long_replies_and_fall_back_to_plain_text() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let daemon = start(&world, &[]);

    // 429 with retry_after: delivered once, after the wait.
    llm.reply_text("first answer");
    tg.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 1",
        json!({ "retry_after": 1 }),
    );
    tg.direct(OWNER, "one");
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    assert_eq!(sent, vec!["first answer"], "{}", stop(daemon).await);
    let attempts = tg.calls_of("sendMessage");
    assert_eq!(attempts.len(), 2, "one refused, one accepted");

    // 10,000 characters with markup: ordered chunks within the limit, nothing lost.
    let long: String = (0..400)
        .map(|i| format!("line {i:04} has **bold** & <angle> text\n"))
        .collect();
    assert!(long.len() >= 10_000);
    llm.reply_text(&long);
    tg.direct(OWNER, "two");
    tg.wait_until(WAIT, |_| {
        let shown: String = tg.sent_to(OWNER as i64)[1..].concat();
        shown.contains("line 0399")
    })
    .await;
    let parts = &tg.sent_to(OWNER as i64)[1..];
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let visible: Vec<String> = parts
        .iter()
        .map(|p| {
            p.replace("<b>", "")
                .replace("</b>", "")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect();
    assert_eq!(visible.concat(), long.replace("**", ""));
    for part in &visible {
        assert!(part.encode_utf16().count() <= 4096, "a part over the limit");
    }

    // Markup the server rejects is sent again as plain text.
    llm.reply_text("a <b>broken</b> reply");
    tg.fail_next(
        "sendMessage",
        400,
        "Bad Request: can't parse entities: unsupported start tag",
        Value::Null,
    );
    tg.direct(OWNER, "three");
    let ok = tg
        .wait_until(WAIT, |_| {
            tg.sent_to(OWNER as i64).last().map(String::as_str) == Some("a <b>broken</b> reply")
        })
        .await;
    assert!(ok, "{:?}\n{}", tg.sent_to(OWNER as i64), stop(daemon).await);
    let last = tg.calls_of("sendMessage").pop().unwrap();
    assert!(last.get("parse_mode").is_none_or(Value::is_null), "{last}");
    stop(daemon).await;
}

/// Anyone may write, and answers are not paced: for the crash tests.
const OPEN_UNPACED: &str =
    "dm_policy = \"open\"\nmessages_per_second = 10000.0\nchat_messages_per_second = 10000.0\n";

/// Ten messages to each chat, round by round; returns the answers each chat must get, in order.
fn flood(tg: &FakeTelegram, chats: &[u64], tag: &str) -> HashMap<u64, Vec<String>> {
    let mut expected: HashMap<u64, Vec<String>> = HashMap::new();
    for round in 0..10 {
        for chat in chats {
            let text = format!("{tag}{chat}-{round}");
            tg.direct(*chat, &text);
            expected
                .entry(*chat)
                .or_default()
                .push(format!("echo: {text}"));
        }
    }
    expected
}

/// Kills the daemon outright (SIGKILL), as a crash would.
async fn kill(mut daemon: Child) {
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;
}

#[tokio::test]
async fn a_kill_during_500_updates_loses_none_and_repeats_none() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, OPEN_UNPACED);
    let chats: Vec<u64> = (0..50).map(|i| 5000 + i).collect();
    let expected = flood(&tg, &chats, "m");
    // Deliveries stop after 150 (unanswered, as if the process died before Telegram read
    // them); then the process is killed outright.
    tg.hold_sends_after(150);
    let daemon = start(&world, &[]);
    let reached = tg
        .wait_until(WAIT, |calls| {
            calls.iter().filter(|c| c.method == "sendMessage").count() >= 150
        })
        .await;
    assert!(reached, "{}", stop(daemon).await);
    // Let answers that Telegram accepted leave the outbox, then crash.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(daemon).await;
    assert!(tg.unconfirmed() > 0 || tg.sent_to(chats[0] as i64).len() < 10);

    tg.unhold();
    let daemon = start(&world, &[]);
    let done = tg
        .wait_until(Duration::from_secs(120), |calls| {
            calls.iter().filter(|c| c.method == "sendMessage").count() >= 500
        })
        .await;
    // A moment for any duplicate to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = stop(daemon).await;
    assert!(
        done,
        "only {} answers\n{log}",
        tg.calls_of("sendMessage").len()
    );
    for chat in &chats {
        let got = tg.sent_to(*chat as i64);
        assert_eq!(&got, &expected[chat], "chat {chat}");
    }
}

#[tokio::test]
async fn webhook_mode_refuses_a_wrong_secret() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let world = world(
        &llm,
        &tg,
        "mode = \"webhook\"\nwebhook_url = \"https://bot.example.org/tg\"\nwebhook_secret = \"s3cret-token\"\n",
    );
    let daemon = start(
        &world,
        &[("OPERATOR__ADMIN__LISTEN", format!("127.0.0.1:{port}"))],
    );
    let registered = tg
        .wait_until(WAIT, |calls| calls.iter().any(|c| c.method == "setWebhook"))
        .await;
    assert!(registered, "{}", stop(daemon).await);
    let hook = &tg.calls_of("setWebhook")[0];
    assert_eq!(
        hook["url"],
        json!(format!(
            "https://bot.example.org/tg/telegram/{}",
            crate::support::telegram::BOT_ID
        ))
    );
    assert_eq!(hook["secret_token"], json!("s3cret-token"));

    let url = format!(
        "http://127.0.0.1:{port}/telegram/{}",
        crate::support::telegram::BOT_ID
    );
    let update = |id: i64, text: &str| {
        json!({ "update_id": id, "message": {
            "message_id": id, "date": 1_780_000_000,
            "chat": { "id": OWNER, "type": "private", "first_name": "Owner" },
            "from": { "id": OWNER, "is_bot": false, "first_name": "Owner" },
            "text": text } })
    };
    let http = reqwest::Client::new();
    // One delivery as Telegram would make it, with this secret header (or none).
    let deliver = |secret: Option<&'static str>, id: i64, text: &'static str| {
        let mut request = http.post(&url).json(&update(id, text));
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(deliver(Some("guess"), 1, "forged").await, 403);
    assert_eq!(deliver(None, 2, "forged").await, 403);
    assert_eq!(deliver(Some("s3cret-token"), 3, "real").await, 200);
    // Telegram may deliver twice; the repeat is not answered again.
    assert_eq!(deliver(Some("s3cret-token"), 3, "real").await, 200);
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tg.sent_to(OWNER as i64), vec!["echo: real"], "{sent:?}");
    assert!(
        tg.calls_of("getUpdates").is_empty(),
        "no polling in webhook mode"
    );
    stop(daemon).await;
}

#[tokio::test]
async fn a_document_lands_in_the_agents_instance_and_the_agent_can_send_files_back() {
    use crate::support::docker::{Cleanup, TEST_IMAGE, ensure_test_image, unique};

    ensure_test_image().await;
    let name = unique("clerk");
    let _cleanup = Cleanup(vec![name.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(
        Some(&llm),
        &format!("{docker}{}", tg.config(&format!("owners = [{OWNER}]\n"))),
    );
    // The agent is made in the console, which shares the state directory.
    llm.reply_tool_calls(&[(
        "c1",
        "agent_create",
        &json!({ "name": name, "persona": "Keeps papers." }).to_string(),
    )]);
    llm.reply_text("Clerk is ready.");
    let out = world.chat(&["make a clerk agent"]).await;
    assert!(
        out.success() && out.stdout.contains("Clerk is ready."),
        "{out:?}"
    );

    tg.add_file("doc-1", "documents/file_1.txt", b"quarterly numbers: 42\n");
    llm.reply_tool_calls(&[(
        "c2",
        "run_command",
        r#"{"command":"cat /workspace/uploads/report.txt"}"#,
    )]);
    llm.reply_tool_calls(&[("c3", "send_file", r#"{"path":"uploads/report.txt"}"#)]);
    llm.echo();
    let daemon = start(&world, &[]);
    tg.direct(OWNER, &format!("/use {name}"));
    tg.wait_sent(OWNER as i64, 1, WAIT).await;
    tg.message(
        json!({ "id": OWNER, "type": "private", "first_name": "Owner" }),
        OWNER,
        "",
        json!({
            "caption": "here is the report",
            "document": { "file_id": "doc-1", "file_unique_id": "u-doc-1",
                          "file_name": "report.txt", "file_size": 22 }
        }),
    );
    tg.wait_until(Duration::from_secs(60), |_| {
        tg.sent_to(OWNER as i64)
            .iter()
            .any(|s| s.starts_with("echo:"))
    })
    .await;
    let sent = tg.sent_to(OWNER as i64);
    let log = stop(daemon).await;
    // Tool progress was one message, edited in place.
    assert_eq!(
        sent.iter().filter(|s| s.starts_with("running ")).count(),
        1,
        "{sent:?}"
    );
    assert!(!tg.calls_of("editMessageText").is_empty(), "{sent:?}");
    assert_eq!(
        sent.last().map(String::as_str),
        Some("echo: here is the report\n[file uploaded: /workspace/uploads/report.txt (22 bytes)]"),
        "{log}"
    );
    // The agent read the file inside its instance...
    let seen = llm
        .completions()
        .iter()
        .any(|r| r.body.to_string().contains("quarterly numbers: 42"));
    assert!(seen, "the agent never saw the file's content");
    // ...and sent it back as a document.
    let documents = tg.calls_of("sendDocument");
    assert_eq!(documents.len(), 1, "{log}");
    assert_eq!(
        documents[0]["document"]["filename"],
        json!("report.txt"),
        "{}",
        documents[0]
    );
    assert_eq!(
        documents[0]["document"]["content"],
        json!("quarterly numbers: 42\n")
    );
}

#[tokio::test]
async fn a_bot_connected_at_runtime_answers_without_a_restart_and_after_one() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    // No bot in the config: the token arrives as a secret, through the control surface.
    let world = World::new(
        Some(&llm),
        &format!(
            "[telegram]\nenabled = false\napi_url = {:?}\nowners = [{OWNER}]\nstreaming = \"off\"\n",
            tg.api_url
        ),
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = [
        ("OPERATOR__ADMIN__LISTEN", format!("127.0.0.1:{port}")),
        (
            "OPERATOR__ADMIN__TOKEN",
            "admin-token-for-tests".to_string(),
        ),
    ];
    let op = |name: &'static str, args: Value| {
        let url = format!("http://127.0.0.1:{port}/api/ops/{name}");
        async move {
            let http = reqwest::Client::new();
            for _ in 0..100 {
                if let Ok(r) = http
                    .post(&url)
                    .bearer_auth("admin-token-for-tests")
                    .json(&args)
                    .send()
                    .await
                {
                    let status = r.status();
                    let body = r.json::<Value>().await.unwrap_or_default();
                    // The admin API answers while the daemon still starts its bots.
                    if !body.to_string().contains("not in this process") {
                        return (status.as_u16(), body);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the admin API never answered");
        }
    };
    let daemon = start(&world, &env);
    let (status, _) = op(
        "secret_create",
        json!({ "name": "TG_HELPER", "value": tg.token }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = op(
        "bot_connect",
        json!({ "secret": "TG_HELPER", "agent": "operator" }),
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", stop(daemon).await);
    assert!(body.to_string().contains("op_test_bot"), "{body}");
    // The token never shows in what the API answers.
    assert!(!body.to_string().contains(&tg.token), "{body}");

    tg.direct(OWNER, "are you there");
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    assert_eq!(sent, vec!["echo: are you there"], "{}", stop(daemon).await);
    terminate(daemon).await;

    // After a restart the bot comes back from its secret.
    let daemon = start(&world, &env);
    tg.direct(OWNER, "still there");
    let sent = tg.wait_sent(OWNER as i64, 2, WAIT).await;
    assert_eq!(
        sent.get(1).map(String::as_str),
        Some("echo: still there"),
        "{}",
        stop(daemon).await
    );
    let (status, body) = op("bot_list", json!({})).await;
    assert_eq!(status, 200);
    assert!(body.to_string().contains("TG_HELPER"), "{body}");
    let (status, body) = op("bot_disconnect", json!({ "bot": "@op_test_bot" })).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = op("bot_list", json!({})).await;
    assert!(body.to_string().contains("No bots"), "{body}");
    stop(daemon).await;
}

#[tokio::test]
async fn a_rejected_token_stops_the_start_and_a_409_is_waited_out() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let bad = World::new(
        Some(&llm),
        &format!(
            "[telegram]\nenabled = true\ntoken = \"{}:AAwrong-token\"\napi_url = {:?}\n",
            crate::support::telegram::BOT_ID,
            tg.api_url
        ),
    );
    let out = bad.run(&["run"], "").await;
    assert!(!out.success());
    assert!(out.stderr.contains("token was rejected"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("AAwrong-token"),
        "the token leaked: {}",
        out.stderr
    );

    // Another poller holds the token for a moment: reported, retried, then served.
    tg.fail_next(
        "getUpdates",
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
        Value::Null,
    );
    let world = world(&llm, &tg, "");
    let daemon = start(&world, &[]);
    tg.direct(OWNER, "after the conflict");
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    let log = stop(daemon).await;
    assert_eq!(sent, vec!["echo: after the conflict"], "{log}");
    assert!(
        log.contains("another process is polling this bot token"),
        "{log}"
    );
}

#[tokio::test]
async fn a_secret_sent_in_the_chat_is_stored_and_its_message_deleted() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let daemon = start(&world, &[]);
    tg.direct(OWNER, "/secret GH_TOKEN ghp_value_in_one_message");
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    assert!(sent[0].contains("GH_TOKEN"), "{sent:?}");
    tg.direct(OWNER, "/secret DB_PASSWORD");
    tg.wait_sent(OWNER as i64, 2, WAIT).await;
    tg.direct(OWNER, "hunter2-next-message");
    let sent = tg.wait_sent(OWNER as i64, 3, WAIT).await;
    assert!(sent[2].contains("DB_PASSWORD"), "{sent:?}");
    let deleted = tg
        .wait_until(WAIT, |calls| {
            calls.iter().filter(|c| c.method == "deleteMessage").count() >= 2
        })
        .await;
    let log = stop(daemon).await;
    assert!(deleted, "{:?}\n{log}", tg.calls());
    // The two messages that carried values are gone; the one that only named the secret stays.
    assert_eq!(tg.calls_of("deleteMessage").len(), 2);
    assert!(llm.completions().is_empty(), "a model saw a secret message");
    for value in ["ghp_value_in_one_message", "hunter2-next-message"] {
        assert!(!sent.iter().any(|s| s.contains(value)), "{sent:?}");
        assert!(!log.contains(value), "{log}");
        // Stored updates are sealed: no value in the database or its log, even for a moment.
        for file in ["operator.db", "operator.db-wal"] {
            let bytes = std::fs::read(world.path().join("state").join(file)).unwrap_or_default();
            let found = bytes.windows(value.len()).any(|w| w == value.as_bytes());
            assert!(!found, "{value} is readable in {file}");
        }
    }
}

/// 1,000 updates over 100 chats, three crashes at random points of the work (a random number
/// of answers in, then a random moment later), a restart after each: every update is answered
/// exactly once, in order per chat.
#[tokio::test]
async fn three_crashes_during_1000_updates_lose_none_and_repeat_none() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, OPEN_UNPACED);
    let chats: Vec<u64> = (0..100).map(|i| 7000 + i).collect();
    let expected = flood(&tg, &chats, "c");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = seed | 1;
    let mut random = |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let mut answered = 0;
    for crash in 0..3 {
        // Telegram stops taking answers after a random count; the process dies a random
        // moment later (turns, stores and settles go on in between).
        let hold_at = answered + 50 + random(200) as usize;
        tg.hold_sends_after(hold_at);
        let daemon = start(&world, &[]);
        let reached = tg
            .wait_until(Duration::from_secs(60), |_| tg.accepted_sends() >= hold_at)
            .await;
        assert!(
            reached,
            "crash {crash} (seed {seed}): stuck at {}\n{}",
            tg.accepted_sends(),
            stop(daemon).await
        );
        tokio::time::sleep(Duration::from_millis(200 + random(300))).await;
        kill(daemon).await;
        answered = tg.accepted_sends();
        tg.unhold();
    }
    let daemon = start(&world, &[]);
    let done = tg.wait_sends(1000, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = stop(daemon).await;
    assert!(
        done,
        "seed {seed}: only {} answers\n{log}",
        tg.accepted_sends()
    );
    for chat in &chats {
        assert_eq!(
            &tg.sent_to(*chat as i64),
            &expected[chat],
            "seed {seed}, chat {chat}"
        );
    }
    assert_eq!(tg.accepted_sends(), 1000, "seed {seed}");
}

/// SIGTERM while a turn runs: the turn finishes within the drain deadline, its answer goes out
/// once, and the process exits cleanly.
#[tokio::test]
async fn sigterm_during_a_turn_delivers_its_answer_then_exits() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text_after("the slow answer", Duration::from_secs(2));
    let tg = FakeTelegram::start().await;
    let world = world(&llm, &tg, "");
    let daemon = start(&world, &[]);
    tg.direct(OWNER, "take your time");
    assert!(
        llm.wait_for_completions(1, WAIT).await,
        "{}",
        stop(daemon).await
    );
    let out = terminate(daemon).await;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{log}", out.status);
    assert_eq!(tg.sent_to(OWNER as i64), vec!["the slow answer"], "{log}");
}
