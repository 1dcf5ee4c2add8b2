//! Conversations through the console channel (`operator chat`) against the fake vendors.

use serde_json::Value;

use crate::support::{FakeLlm, Vendor, World};

/// The model calls `agent_create`, the tool runs, and the final answer arrives.
async fn tool_call_round_trip(vendor: Vendor) {
    let llm = FakeLlm::start(vendor).await;
    llm.reply_tool_calls(&[(
        "call_1",
        "agent_create",
        r#"{"name":"daniel","persona":"Watches repos."}"#,
    )]);
    llm.reply_text("Created daniel; he watches repos.");
    let world = World::new(Some(&llm), "");

    let out = world
        .chat(&[
            "set up an agent called daniel that watches repos",
            "/agents",
        ])
        .await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("Created daniel; he watches repos."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("• daniel"),
        "the agent exists afterwards: {}",
        out.stdout
    );

    let requests = llm.completions();
    assert_eq!(
        requests.len(),
        2,
        "one call for the tool, one for the answer"
    );
    let first = &requests[0].body;
    let tools = first["tools"].as_array().expect("tools offered");
    let tool_names: Vec<&str> = tools
        .iter()
        .map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
                .unwrap()
        })
        .collect();
    assert!(tool_names.contains(&"agent_create"), "{tool_names:?}");
    assert_eq!(first["model"], "fake-model");

    // The second request carries the tool's result back to the model.
    let second = requests[1].body.to_string();
    assert!(second.contains("Created agent daniel"), "{second}");
    match vendor {
        Vendor::OpenAi => {
            assert_eq!(requests[0].headers["authorization"], "Bearer test-key");
            assert!(requests[0].path.ends_with("/chat/completions"));
            assert!(second.contains(r#""tool_call_id":"call_1""#), "{second}");
            assert!(
                first["messages"][0]["content"]
                    .as_str()
                    .unwrap()
                    .contains("You are Operator")
            );
        }
        Vendor::Anthropic => {
            assert_eq!(requests[0].headers["x-api-key"], "test-key");
            assert_eq!(requests[0].headers["anthropic-version"], "2023-06-01");
            assert_eq!(requests[0].path, "/v1/messages");
            assert!(second.contains(r#""tool_use_id":"call_1""#), "{second}");
            assert!(
                first["system"][0]["text"]
                    .as_str()
                    .unwrap()
                    .contains("You are Operator")
            );
            // Prompt caching: the system prompt, the tools and the history end in breakpoints.
            assert_eq!(first["system"][0]["cache_control"]["type"], "ephemeral");
            let tools = first["tools"].as_array().unwrap();
            assert_eq!(tools.last().unwrap()["cache_control"]["type"], "ephemeral");
        }
    }
}

#[tokio::test]
async fn openai_tool_call_creates_an_agent() {
    tool_call_round_trip(Vendor::OpenAi).await;
}

#[tokio::test]
async fn anthropic_tool_call_creates_an_agent() {
    tool_call_round_trip(Vendor::Anthropic).await;
}

#[tokio::test]
async fn history_survives_a_restart() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text("Nice to meet you, Ana.");
    llm.reply_text("Your name is Ana.");
    let world = World::new(Some(&llm), "");

    let first = world.chat(&["my name is Ana"]).await;
    assert!(first.stdout.contains("Nice to meet you, Ana."), "{first:?}");
    let second = world.chat(&["what is my name?"]).await;
    assert!(second.stdout.contains("Your name is Ana."), "{second:?}");

    let request = &llm.completions()[1].body;
    let contents: Vec<String> = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        contents.contains(&"my name is Ana".to_string()),
        "{contents:?}"
    );
    assert!(
        contents.contains(&"Nice to meet you, Ana.".to_string()),
        "{contents:?}"
    );
    assert_eq!(contents.last().unwrap(), "what is my name?");
}

#[tokio::test]
async fn a_server_error_is_retried_into_one_answer() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_error(500, "upstream hiccup");
    llm.reply_error_with_headers(429, "slow down", vec![("retry-after", "0".into())]);
    llm.reply_text("All good.");
    let world = World::new(Some(&llm), "");

    let out = world.chat(&["hello"]).await;
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.matches("All good.").count(), 1, "{}", out.stdout);
    assert!(!out.stdout.contains("error"), "{}", out.stdout);
    assert_eq!(llm.completions().len(), 3);
}

#[tokio::test]
async fn a_rejected_key_is_explained_and_the_message_kept() {
    let llm = FakeLlm::start(Vendor::Anthropic).await;
    llm.reply_error(401, "invalid x-api-key");
    let world = World::new(Some(&llm), "");

    let out = world.chat(&["remember the milk"]).await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("the LLM provider rejected the API key"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("invalid x-api-key"), "{}", out.stdout);
    assert_eq!(llm.completions().len(), 1, "401 is not retried");

    // The key is fixed; the earlier message is still part of the conversation.
    llm.reply_text("Noted.");
    let again = world.chat(&["and the eggs"]).await;
    assert!(again.stdout.contains("Noted."), "{again:?}");
    let body = llm.completions()[1].body.to_string();
    assert!(body.contains("remember the milk"), "{body}");
    assert!(body.contains("and the eggs"), "{body}");
}

#[tokio::test]
async fn commands_work_without_an_llm_and_free_text_says_what_to_set() {
    let world = World::new(None, "");
    let out = world
        .chat(&["/help", "/status", "/agents", "hello there"])
        .await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("/use <agent>"), "{}", out.stdout);
    assert!(
        out.stdout.contains("model: not configured"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 agent(s)"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("no LLM is configured: set [llm] api_key"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn new_starts_a_fresh_conversation() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text("first answer");
    llm.reply_text("second answer");
    let world = World::new(Some(&llm), "");
    let out = world.chat(&["old topic", "/new", "new topic"]).await;
    assert!(
        out.stdout.contains("Started a fresh conversation."),
        "{}",
        out.stdout
    );
    let body = llm.completions()[1].body.to_string();
    assert!(
        body.contains("new topic") && !body.contains("old topic"),
        "{body}"
    );
}

#[tokio::test]
async fn use_binds_the_chat_to_an_agent_with_its_persona_and_model() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[(
        "c1",
        "agent_create",
        r#"{"name":"poet","persona":"You answer in rhymes.","model":"poet-model"}"#,
    )]);
    llm.reply_text("Made poet.");
    llm.reply_text("Roses are red.");
    llm.reply_text("Back to work.");
    let world = World::new(Some(&llm), "");
    let out = world
        .chat(&[
            "make a poet",
            "/use poet",
            "say something",
            "/use operator",
            "@poet, are you there?",
        ])
        .await;
    assert!(
        out.stdout.contains("This chat now talks to poet."),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Roses are red."), "{}", out.stdout);
    assert!(
        out.stdout.contains("This chat now talks to Operator."),
        "{}",
        out.stdout
    );
    let requests = llm.completions();
    let poet = &requests[2].body;
    assert_eq!(poet["model"], "poet-model");
    assert!(
        poet["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You answer in rhymes.")
    );
    assert!(
        poet.get("tools").is_none(),
        "agents without an instance have no tools yet"
    );
    // A mention goes to the named agent even though the chat is bound to Operator.
    let mentioned = &requests[3].body;
    assert_eq!(mentioned["model"], "poet-model");
    assert_eq!(
        mentioned["messages"].as_array().unwrap().last().unwrap()["content"],
        "are you there?"
    );
}

#[tokio::test]
async fn stop_cancels_the_running_turn_and_the_chat_goes_on() {
    use tokio::io::AsyncWriteExt;

    let (_llm, _world, child, mut stdin) = slow_turn("a slow question", "fresh answer").await;
    stdin.write_all(b"/stop\nnext question\n").await.unwrap();
    drop(stdin);
    let out = crate::support::process::finish(child).await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("(stopped)"), "{}", out.stdout);
    assert!(!out.stdout.contains("too late"), "{}", out.stdout);
    assert!(out.stdout.contains("fresh answer"), "{}", out.stdout);
}

#[tokio::test]
async fn messages_and_tool_calls_reach_the_activity_feed() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[("c1", "agent_create", r#"{"name":"scout"}"#)]);
    llm.reply_text("done");
    let world = World::new(Some(&llm), "");
    let out = world.chat(&["create scout"]).await;
    assert!(out.success(), "{out:?}");

    let store = operator::store::Store::open(&world.path().join("state"))
        .await
        .unwrap();
    let filter = operator::store::ActivityFilter {
        limit: 100,
        ..Default::default()
    };
    let kinds: Vec<String> = store
        .activity(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    store.close().await;
    for kind in ["message.in", "op.agent_create", "message.out"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
}

#[tokio::test]
async fn ctrl_c_cancels_the_turn_not_the_process() {
    use tokio::io::AsyncWriteExt;

    let (_llm, _world, child, mut stdin) = slow_turn("a slow question", "still here").await;
    let pid = child.id().unwrap().to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    stdin.write_all(b"are you there?\n").await.unwrap();
    drop(stdin);
    let out = crate::support::process::finish(child).await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("(stopped)"), "{}", out.stdout);
    assert!(out.stdout.contains("still here"), "{}", out.stdout);
}

#[tokio::test]
async fn a_secret_value_sent_as_the_next_message_is_stored_not_chatted() {
    let world = World::new(None, "");
    let out = world
        .chat(&[
            "/secret API_TOKEN",
            "tok-1234567890abcdef",
            "/secret bad-name x",
        ])
        .await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("Send the value of API_TOKEN as your next message"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Stored secret API_TOKEN (encrypted)"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("no LLM is configured"),
        "the value never became a turn: {}",
        out.stdout
    );
    assert!(out.stdout.contains("not a valid name"), "{}", out.stdout);
    assert!(!out.stdout.contains("tok-1234567890abcdef"));
}

#[tokio::test]
async fn a_turn_cut_short_by_a_crash_is_reported_once_at_the_next_start() {
    let (llm, world, mut child, stdin) =
        slow_turn("compile the quarterly report", "Here it is again.").await;
    child.kill().await.unwrap();
    drop(stdin);

    let after = world.chat(&[]).await;
    assert!(after.success(), "{after:?}");
    assert!(
        after
            .stdout
            .contains("Your request \"compile the quarterly report\" to operator was interrupted"),
        "{}",
        after.stdout
    );
    let again = world.chat(&["please retry"]).await;
    assert!(
        !again.stdout.contains("was interrupted"),
        "reported once: {}",
        again.stdout
    );
    assert!(
        again.stdout.contains("Here it is again."),
        "{}",
        again.stdout
    );
    let history = llm.completions()[1].body.to_string();
    assert!(
        history.contains("this turn was interrupted"),
        "the model knows: {history}"
    );
}

/// `operator chat` whose first turn ("too late") takes 30 s at the model, with `then` as the
/// model's next reply; returns once the model has the first request, stdin still open.
async fn slow_turn(
    question: &str,
    then: &str,
) -> (
    FakeLlm,
    World,
    tokio::process::Child,
    tokio::process::ChildStdin,
) {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text_after("too late", Duration::from_secs(30));
    llm.reply_text(then);
    let world = World::new(Some(&llm), "");
    let mut child = world.spawn(&["chat"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{question}\n").as_bytes())
        .await
        .unwrap();
    assert!(
        llm.wait_for_completions(1, Duration::from_secs(20)).await,
        "the turn started"
    );
    (llm, world, child, stdin)
}
