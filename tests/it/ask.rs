//! Operator works with its agents: `agent_ask` sends a message into several agents in one
//! turn, and every reply comes back in one tool result; the agents' own chats receive nothing.

use serde_json::json;

use crate::support::llm::tool_results;
use crate::support::{FakeLlm, Vendor, World};

#[tokio::test]
async fn operator_asks_two_agents_in_one_turn_and_gets_both_replies() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[
        (
            "c1",
            "agent_create",
            r#"{"name":"scout","persona":"You scout."}"#,
        ),
        (
            "c2",
            "agent_create",
            r#"{"name":"clerk","persona":"You keep records."}"#,
        ),
    ]);
    llm.reply_text("Both are ready.");
    // Each agent answers from its own system prompt.
    llm.reply_when("Your name: scout.", "scout here: the road is clear");
    llm.reply_when("Your name: clerk.", "clerk here: 42 records filed");
    llm.reply_tool_calls(&[(
        "c3",
        "agent_ask",
        &json!({ "agents": ["scout", "clerk"], "message": "report your status" }).to_string(),
    )]);
    llm.reply_text("Scout says the road is clear; clerk filed 42 records.");
    let world = World::new(Some(&llm), "");
    let out = world
        .chat(&["make a scout and a clerk", "ask both for their status"])
        .await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("Scout says the road is clear; clerk filed 42 records."),
        "{}",
        out.stdout
    );
    // The agents' replies reached Operator, not the chat.
    assert!(!out.stdout.contains("scout here"), "{}", out.stdout);
    let last = llm.completions().last().unwrap().body.clone();
    let results = tool_results(&last);
    let result = results.last().unwrap();
    assert!(
        result.contains("scout here: the road is clear")
            && result.contains("clerk here: 42 records filed"),
        "{result}"
    );
    // Each agent saw the message as coming from Operator.
    let asked: Vec<String> = llm
        .completions()
        .iter()
        .map(|r| r.body.to_string())
        .filter(|b| b.contains("Your name: scout.") || b.contains("Your name: clerk."))
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|b| b.contains("[message from Operator")));
    // What scout did is in the records: agent_history reads it back.
    llm.reply_tool_calls(&[("c4", "agent_history", r#"{"agent":"scout"}"#)]);
    llm.reply_text("Scout reported once.");
    let out = world.chat(&["what did scout do?"]).await;
    assert!(out.stdout.contains("Scout reported once."), "{out:?}");
    let results = tool_results(&llm.completions().last().unwrap().body);
    let history = results.last().unwrap();
    assert!(
        history.contains("message.out") && history.contains("scout here: the road is clear"),
        "{history}"
    );
}
