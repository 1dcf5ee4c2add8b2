//! Discord, end to end: the real binary and real serenity against a fake Discord (REST through
//! the proxy setting, and a gateway WebSocket) on 127.0.0.1, with a fake LLM.

use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::discord::{BOT_ID, FakeDiscord};
use crate::support::process::{BIN, spawn, stop};
use crate::support::{FakeLlm, Vendor, World};

const WAIT: Duration = Duration::from_secs(30);
const OWNER: u64 = 4242;
const DM: u64 = 5001;
const GUILD: u64 = 6001;
const ROOM: u64 = 6002;

fn start(world: &World) -> Child {
    world.daemon(&[])
}

fn world(llm: &FakeLlm, discord: &FakeDiscord, extra: &str) -> World {
    World::new(
        Some(llm),
        // Replies arrive whole here; tests/it/live.rs shows them growing.
        &discord.config(&format!("owners = [{OWNER}]\nstreaming = \"off\"\n{extra}")),
    )
}

#[tokio::test]
async fn direct_messages_are_answered_without_pings_or_embeds_and_guilds_need_a_mention() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let discord = FakeDiscord::start().await;
    let world = world(&llm, &discord, "group_policy = \"open\"\n");
    let daemon = start(&world);
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);

    llm.reply_text("hello @everyone and <@&123>, all is well");
    discord.message(DM, None, OWNER, "how is it going?");
    let texts = discord.wait_texts(DM, 1, WAIT).await;
    assert_eq!(
        texts,
        vec!["hello @everyone and <@&123>, all is well"],
        "{}",
        stop(daemon).await
    );
    let body = &discord.posted(DM)[0];
    // Nobody is pinged, whatever the text says, and links do not unfurl.
    assert_eq!(body["allowed_mentions"]["parse"], json!([]), "{body}");
    assert_eq!(body["allowed_mentions"]["users"], json!([]), "{body}");
    assert_eq!(body["flags"].as_u64().unwrap_or(0) & 4, 4, "{body}");

    // In a guild channel: ignored without a mention, answered with one.
    llm.echo();
    discord.message(ROOM, Some(GUILD), 77, "just talking here");
    discord.message(ROOM, Some(GUILD), 77, &format!("<@{BOT_ID}> what now"));
    let texts = discord.wait_texts(ROOM, 1, WAIT).await;
    assert_eq!(texts, vec!["echo: what now"], "{}", stop(daemon).await);
    assert_eq!(llm.completions().len(), 2);
    stop(daemon).await;
}

#[tokio::test]
async fn a_long_reply_with_code_arrives_as_balanced_chunks() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let discord = FakeDiscord::start().await;
    let world = world(&llm, &discord, "chat_messages_per_second = 100.0\n");
    let daemon = start(&world);
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);
    let code: String = (0..250)
        .map(|i| format!("let value_{i:03} = {i};\n"))
        .collect();
    let reply = format!("Here is the file:\n```rust\n{code}```\nThat is all.");
    assert!(reply.len() >= 4_500, "{}", reply.len());
    llm.reply_text(&reply);
    discord.message(DM, None, OWNER, "show me the code");
    let done = discord
        .wait_until(WAIT, || {
            discord
                .texts(DM)
                .last()
                .is_some_and(|t| t.ends_with("That is all."))
        })
        .await;
    let texts = discord.texts(DM);
    let log = stop(daemon).await;
    assert!(done, "{texts:?}\n{log}");
    assert!(texts.len() >= 3, "{} parts", texts.len());
    for t in &texts {
        assert!(
            t.chars().count() <= 2000,
            "a part of {} characters",
            t.chars().count()
        );
        assert_eq!(t.matches("```").count() % 2, 0, "unbalanced: {t}");
    }
    assert!(texts[1].starts_with("```rust\n"), "{}", texts[1]);
    let all = texts.concat();
    assert!(all.contains("let value_000 = 0;") && all.contains("let value_249 = 249;"));
}

#[tokio::test]
async fn a_dropped_gateway_resumes_and_the_next_message_is_answered_once() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let discord = FakeDiscord::start().await;
    let world = world(&llm, &discord, "chat_messages_per_second = 100.0\n");
    let daemon = start(&world);
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);
    discord.message(DM, None, OWNER, "first");
    let texts = discord.wait_texts(DM, 1, WAIT).await;
    assert_eq!(texts, vec!["echo: first"], "{}", stop(daemon).await);

    discord.drop_connection();
    // Sent while the bot is away: delivered when it resumes.
    discord.message(DM, None, OWNER, "second");
    let resumed = discord.wait_until(WAIT, || discord.resumes() >= 1).await;
    assert!(resumed, "{}", stop(daemon).await);
    let texts = discord.wait_texts(DM, 2, WAIT).await;
    discord.message(DM, None, OWNER, "third");
    let texts_after = discord.wait_texts(DM, 3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stop(daemon).await;
    assert_eq!(texts[1], "echo: second", "{log}");
    assert_eq!(
        discord.texts(DM),
        vec!["echo: first", "echo: second", "echo: third"],
        "{texts_after:?}\n{log}"
    );
    assert_eq!(
        discord.identifies(),
        1,
        "it resumed instead of starting over"
    );
}

#[tokio::test]
async fn a_discord_bot_connected_at_runtime_answers_and_shows_in_status() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let discord = FakeDiscord::start().await;
    let world = World::new(
        Some(&llm),
        &format!(
            "[discord]\nenabled = false\napi_url = {:?}\nowners = [{OWNER}]\nstreaming = \"off\"\n",
            discord.api_url
        ),
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config"])
        .arg(&world.config)
        .current_dir(world.path())
        .env("OPERATOR__ADMIN__LISTEN", format!("127.0.0.1:{port}"))
        .env("OPERATOR__ADMIN__TOKEN", "admin-token-for-tests");
    let daemon = spawn(command);
    let http = reqwest::Client::new();
    let op = |name: &str, args: serde_json::Value| {
        let request = http
            .post(format!("http://127.0.0.1:{port}/api/ops/{name}"))
            .bearer_auth("admin-token-for-tests")
            .json(&args);
        async move {
            for _ in 0..100 {
                if let Ok(r) = request.try_clone().unwrap().send().await {
                    let status = r.status().as_u16();
                    return (
                        status,
                        r.json::<serde_json::Value>().await.unwrap_or_default(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the admin API never answered");
        }
    };
    let (status, _) = op(
        "secret_create",
        json!({ "name": "DISCORD_HELPER", "value": discord.token }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = op(
        "bot_connect",
        json!({ "secret": "DISCORD_HELPER", "agent": "operator" }),
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", stop(daemon).await);
    assert!(body.to_string().contains("discord:"), "{body}");
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);
    discord.message(DM, None, OWNER, "hello runtime bot");
    let texts = discord.wait_texts(DM, 1, WAIT).await;
    assert_eq!(
        texts,
        vec!["echo: hello runtime bot"],
        "{}",
        stop(daemon).await
    );
    // /status tells the bot's connection state.
    discord.message(DM, None, OWNER, "/status");
    let texts = discord.wait_texts(DM, 2, WAIT).await;
    let log = stop(daemon).await;
    assert!(
        texts
            .get(1)
            .is_some_and(|t| t.contains("bot @op-discord-bot (discord:") && t.contains(": up")),
        "{texts:?}\n{log}"
    );
}

#[tokio::test]
async fn a_rejected_discord_token_stops_the_start() {
    let discord = FakeDiscord::start().await;
    let world = World::new(
        None,
        &format!(
            "[discord]\nenabled = true\ntoken = \"wrong.token.here\"\napi_url = {:?}\n",
            discord.api_url
        ),
    );
    let out = world.run(&["run"], "").await;
    assert!(!out.success());
    assert!(out.stderr.contains("token was rejected"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong.token.here"), "{}", out.stderr);
    let check = world.run(&["check"], "").await;
    assert!(
        check.stdout.contains("discord") && check.stdout.contains("rejected"),
        "{check:?}"
    );
}

#[tokio::test]
async fn a_slash_command_is_deferred_then_answered_with_the_tool_call_in_between() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[("c1", "agent_list", "{}")]);
    llm.reply_text("You have no agents yet, @everyone.");
    let discord = FakeDiscord::start().await;
    let world = world(&llm, &discord, "guild_ids = [6001]\n");
    let daemon = start(&world);
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);
    // The commands were registered for the guild, /ask among them.
    let registered = discord
        .wait_until(WAIT, || {
            discord
                .calls()
                .iter()
                .any(|c| c.path.ends_with("/guilds/6001/commands"))
        })
        .await;
    assert!(registered, "{}", stop(daemon).await);
    let commands = discord
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/guilds/6001/commands"))
        .unwrap()
        .body;
    let names: Vec<&str> = commands
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "ask", "use", "agents", "status", "stop", "pair", "new", "help",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }

    let id = discord.slash(DM, OWNER, "ask", &[("prompt", "which agents do I have?")]);
    let answered = discord
        .wait_until(WAIT, || {
            discord
                .interaction_calls(id)
                .iter()
                .any(|(_, kind, _)| kind == "original")
        })
        .await;
    let calls = discord.interaction_calls(id);
    // A second command in the chat: its answer goes out only once the first one's delivery is
    // settled (one message of a chat in flight at a time), so the log then says how it went.
    let help = discord.slash(DM, OWNER, "help", &[]);
    let helped = discord
        .wait_until(WAIT, || {
            let calls = discord.interaction_calls(help);
            calls.iter().any(|(_, kind, _)| kind == "original")
        })
        .await;
    let log = stop(daemon).await;
    assert!(answered && helped, "{calls:?}\n{log}");
    // The edited response (Discord's answer, a message) was taken as delivered.
    assert!(!log.contains("not delivered"), "{log}");
    // Deferred first (type 5), then the deferred response edited with the answer.
    assert_eq!(calls[0].1, "callback");
    assert_eq!(calls[0].2["type"], json!(5));
    let (_, _, edit) = calls.iter().find(|(_, k, _)| k == "original").unwrap();
    assert_eq!(edit["content"], json!("You have no agents yet, @everyone."));
    assert_eq!(edit["allowed_mentions"]["parse"], json!([]));
    // The model's tool call ran between the two.
    let requests = llm.completions();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].body.to_string().contains("agent_list"));
}

#[tokio::test]
async fn a_bound_guild_channel_talks_to_its_agent_without_mentions() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[(
        "c1",
        "agent_create",
        &json!({ "name": "scout", "persona": "Scouts repositories." }).to_string(),
    )]);
    llm.reply_text("Scout is ready.");
    let discord = FakeDiscord::start().await;
    let world = world(&llm, &discord, "group_policy = \"open\"\n");
    // The agent is made in the console (same state directory).
    let out = world.chat(&["make a scout agent"]).await;
    assert!(
        out.success() && out.stdout.contains("Scout is ready."),
        "{out:?}"
    );
    llm.echo();
    let daemon = start(&world);
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);
    // Unbound and unmentioned: ignored. Then an owner binds the channel.
    discord.message(ROOM, Some(GUILD), 77, "anyone here?");
    discord.message(ROOM, Some(GUILD), OWNER, &format!("<@{BOT_ID}> /use scout"));
    let texts = discord.wait_texts(ROOM, 1, WAIT).await;
    assert!(
        texts[0].contains("scout"),
        "{texts:?}\n{}",
        stop(daemon).await
    );
    discord.message(ROOM, Some(GUILD), 77, "what did you find?");
    let texts = discord.wait_texts(ROOM, 2, WAIT).await;
    let log = stop(daemon).await;
    assert_eq!(
        texts.get(1).map(String::as_str),
        Some("echo: what did you find?"),
        "{log}"
    );
    // The scout answered, and the ignored message never reached a model.
    let last = llm.completions().pop().unwrap().body.to_string();
    assert!(last.contains("Scouts repositories."), "{last}");
    assert!(
        !llm.completions()
            .iter()
            .any(|r| r.body.to_string().contains("anyone here?"))
    );
}

#[tokio::test]
async fn an_attachment_is_fetched_and_described_to_the_agent() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let discord = FakeDiscord::start().await;
    let world = world(&llm, &discord, "");
    let daemon = start(&world);
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);
    discord.message_with_file(DM, OWNER, "keep this", "notes.txt");
    let texts = discord.wait_texts(DM, 1, WAIT).await;
    let log = stop(daemon).await;
    // Operator has no workspace: the file was fetched, and the agent is told where it can go.
    assert_eq!(texts.len(), 1, "{log}");
    assert!(
        texts[0]
            .starts_with("echo: keep this\n[file notes.txt arrived, but Operator has no workspace"),
        "{texts:?}"
    );
    // The channel's copy is gone once handed on.
    let incoming = world.path().join("state/files/discord/incoming");
    let left = std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "files left in {}", incoming.display());
}
