//! The turn loop's edges: malformed tool calls, the step limit, and compaction of long
//! histories.

use serde_json::json;

use crate::support::llm::tool_results;
use crate::support::{FakeLlm, Vendor, World};

#[tokio::test]
async fn malformed_tool_calls_are_answered_as_errors() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[
        ("a", "launch_rockets", "{}"),
        ("b", "agent_create", "{not json"),
        ("c", "agent_create", r#"{"nom":"x"}"#),
        ("d", "agent_create", r#"{"name":"Bad Name"}"#),
    ]);
    llm.reply_text("Sorry, those calls failed.");
    let world = World::new(Some(&llm), "");
    let out = world.chat(&["do things"]).await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("Sorry, those calls failed."),
        "{}",
        out.stdout
    );

    let results = tool_results(&llm.completions()[1].body);
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(
        results[0].contains("no tool called \"launch_rockets\""),
        "{}",
        results[0]
    );
    assert!(results[1].contains("not valid JSON"), "{}", results[1]);
    assert!(
        results[2].contains("invalid arguments for agent_create"),
        "{}",
        results[2]
    );
    assert!(results[3].contains("not allowed"), "{}", results[3]);
}

#[tokio::test]
async fn a_turn_stops_at_max_steps() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    for i in 0..3 {
        llm.reply_tool_calls(&[(&format!("s{i}"), "status", "{}")]);
    }
    let world = World::new(Some(&llm), "[operator]\nmax_steps = 3\n");
    let out = world.chat(&["loop forever"]).await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("stopped after 3 steps"),
        "{}",
        out.stdout
    );
    assert_eq!(llm.completions().len(), 3);
    assert_eq!(llm.remaining_script(), 0);
}

#[tokio::test]
async fn long_histories_are_compacted_into_a_summary() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = World::new(Some(&llm), "[operator]\ncontext_tokens = 1000\n");
    // Four long exchanges (about 250 tokens each way) overflow a 1,000-token budget.
    let long = "lorem ipsum dolor sit amet ".repeat(40);
    for i in 0..4 {
        llm.reply_text(&format!("answer {i}: {long}"));
    }
    llm.reply_when(
        "You compress chat history",
        "SUMMARY: the user sent long texts.",
    );
    llm.reply_text("final answer");
    let lines: Vec<String> = (0..4)
        .map(|i| format!("question {i}: {long}"))
        .chain(["short question".to_string()])
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = world.chat(&refs).await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("final answer"), "{}", out.stdout);

    let requests = llm.completions();
    let summarize = requests
        .iter()
        .rfind(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .contains("You compress chat history")
        })
        .expect("a summarization request");
    let summarized = summarize.body.to_string();
    assert!(
        summarized.contains("question 0") || summarized.contains("Earlier summary"),
        "{summarized}"
    );
    let last = &requests.last().unwrap().body;
    let system = last["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("SUMMARY: the user sent long texts."),
        "{system}"
    );
    let text = last.to_string();
    assert!(
        !text.contains("question 0"),
        "old turns are replaced by the summary"
    );
    assert!(text.contains("short question"));
    // Every model request is in the usage records, the summarization (not streamed) too.
    let store = operator::store::Store::open(&world.path().join("state"))
        .await
        .unwrap();
    let rows = store.usage_since(0, "all").await.unwrap();
    store.close().await;
    assert_eq!(rows[0].requests as usize, requests.len(), "{rows:?}");
}

/// A tool call with one field too many (models add them) is refused with the field named and
/// the accepted ones listed, and the corrected call goes through; every schema says so.
#[tokio::test]
async fn an_extra_field_is_named_and_the_corrected_call_is_stored() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let skill_md = "---\nname: greet\ndescription: Greets people.\n---\nSay hello.\n";
    let extra = json!({ "name": "greet", "skill_md": skill_md, "description": "Greets." });
    let fixed = json!({ "name": "greet", "skill_md": skill_md });
    llm.reply_tool_calls(&[("a", "skill_write", &extra.to_string())]);
    llm.reply_tool_calls(&[("b", "skill_write", &fixed.to_string())]);
    llm.reply_text("Stored the skill.");
    let world = World::new(Some(&llm), "");
    let out = world.chat(&["write a greeting skill"]).await;
    assert!(out.stdout.contains("Stored the skill."), "{out:?}");

    let requests = llm.completions();
    for tool in requests[0].body["tools"].as_array().unwrap() {
        let schema = &tool["function"]["parameters"];
        assert_eq!(schema["additionalProperties"], false, "{tool}");
    }
    let first = tool_results(&requests[1].body);
    assert!(
        first[0].contains("unknown field `description`")
            && first[0].contains("it takes only: ")
            && first[0].contains("skill_md"),
        "{}",
        first[0]
    );
    let second = tool_results(&requests[2].body);
    assert!(second[1].contains("\"ok\":true"), "{}", second[1]);
}

/// `[operator] max_turns` caps turns running at once across chats: with one slot, a second
/// chat's turn starts only when the first one has ended, and both are answered.
#[tokio::test]
async fn max_turns_makes_other_chats_wait_for_a_slot() {
    use operator::domain::{Caller, ChatRef};
    use std::time::Duration;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text_after("first", Duration::from_millis(800));
    llm.reply_text("second");
    let world = crate::support::inproc::core(Some(&llm), |s| {
        s.operator.max_turns = 1;
    })
    .await;
    let router = &world.core.router;
    let one = router.inject(
        ChatRef::new("test", "a"),
        "operator".into(),
        Caller::owner("a"),
        "hello from a".into(),
    );
    assert!(llm.wait_for_completions(1, Duration::from_secs(30)).await);
    let two = router.inject(
        ChatRef::new("test", "b"),
        "operator".into(),
        Caller::owner("b"),
        "hello from b".into(),
    );
    // While the first turn waits on its model, the second has no slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(llm.completions().len(), 1, "the second turn started early");
    let one = tokio::time::timeout(Duration::from_secs(30), one).await;
    let two = tokio::time::timeout(Duration::from_secs(30), two).await;
    assert!(one.is_ok() && two.is_ok(), "both turns end");
    assert_eq!(llm.completions().len(), 2);
    let bodies: Vec<String> = llm
        .completions()
        .iter()
        .map(|c| c.body.to_string())
        .collect();
    assert!(bodies[0].contains("hello from a") && bodies[1].contains("hello from b"));
}
