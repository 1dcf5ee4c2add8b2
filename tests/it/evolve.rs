//! Build, test, evolve against the real Docker engine: an evaluation with a text, a command and
//! a regex check, each case on a throwaway clone; two variants ranked on the same cases; the
//! winner promoted, and no variant or clone container left behind.

use serde_json::{Value, json};

use crate::support::docker::{Cleanup, TEST_IMAGE, docker, ensure_test_image, unique};
use crate::support::inproc::core;
use crate::support::{FakeLlm, Vendor};

/// Names of the engine's containers made for `prefix` (clones of evaluations: `eval-`).
async fn containers_named(prefix: &str) -> Vec<String> {
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        ..Default::default()
    };
    docker()
        .await
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .filter(|n| {
            n.trim_start_matches('/')
                .starts_with(&format!("operator-{prefix}"))
        })
        .collect()
}

#[tokio::test]
async fn an_agent_is_evaluated_varied_ranked_and_the_winner_promoted() {
    ensure_test_image().await;
    let writer = unique("writer");
    let _cleanup = Cleanup(vec![writer.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = core(Some(&llm), |s| {
        crate::support::inproc::use_engine(s, TEST_IMAGE);
    })
    .await;
    let ops = &world.core.ops;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    ops.invoke(
        &owner,
        "agent_create",
        json!({ "name": writer, "persona": "You write." }),
    )
    .await
    .unwrap();
    let evals_before = containers_named("eval-").await.len();

    // Cases run in order, so the script answers them in order.
    llm.reply_text("hello there");
    llm.reply_tool_calls(&[(
        "c1",
        "run_command",
        r#"{"command":"echo hi > /workspace/out.txt"}"#,
    )]);
    llm.reply_text("done");
    llm.reply_text("hello again");
    let cases = json!([
        { "prompt": "say hello", "expect": "Hello" },
        { "prompt": "make out.txt", "expect": { "command": "test -f /workspace/out.txt" } },
        { "prompt": "say goodbye", "expect": { "regex": "\\bbye\\b" } }
    ]);
    let out = ops
        .invoke(
            &owner,
            "agent_evaluate",
            json!({ "agent": writer, "cases": cases }),
        )
        .await
        .unwrap();
    assert!(out.text.contains("2/3 passed"), "{}", out.text);
    let results = out.data["results"].as_array().unwrap();
    let passed: Vec<bool> = results.iter().map(|r| r["passed"] == true).collect();
    assert_eq!(passed, vec![true, true, false], "{}", out.text);
    assert!(
        results[1]["detail"].as_str().unwrap().starts_with("exit 0"),
        "{}",
        out.text
    );
    assert!(
        results
            .iter()
            .all(|r| r["tokens"].as_i64() == Some(15) || r["tokens"].as_i64() == Some(30)),
        "{}",
        out.text
    );
    assert_eq!(
        containers_named("eval-").await.len(),
        evals_before,
        "clones removed"
    );

    // Two variants, each answering from its persona (they run in parallel: rules, not a script).
    llm.reply_when("You write tersely.", "hello");
    llm.reply_when("You write at length.", "hello, and bye for now");
    let out = ops
        .invoke(
            &owner,
            "agent_variants",
            json!({ "agent": writer, "change": { "persona": ["You write tersely.", "You write at length."] } }),
        )
        .await
        .unwrap();
    let ranked = out.data["ranked"].as_array().unwrap().clone();
    assert_eq!(ranked.len(), 2, "{}", out.text);
    assert_eq!(
        ranked[0]["change"]["persona"], "You write at length.",
        "{}",
        out.text
    );
    assert_eq!(ranked[0]["passed"], 2, "{}", out.text);
    assert_eq!(ranked[1]["passed"], 1, "{}", out.text);
    let variants: Vec<String> = ranked
        .iter()
        .map(|r| r["variant"].as_str().unwrap().to_string())
        .collect();
    let _variants_cleanup = Cleanup(variants.clone());
    for v in &variants {
        assert_eq!(containers_named(v).await.len(), 1, "{v} has its instance");
    }

    let out = ops
        .invoke(&owner, "agent_promote", json!({ "variant": variants[0] }))
        .await
        .unwrap();
    assert!(out.text.contains("Removed 2 variant(s)"), "{}", out.text);
    let agent: Value = ops
        .invoke(&owner, "agent_list", json!({}))
        .await
        .unwrap()
        .data;
    let text = agent.to_string();
    assert!(text.contains("You write at length."), "{text}");
    assert!(
        !variants.iter().any(|v| text.contains(v.as_str())),
        "{text}"
    );
    for v in &variants {
        assert!(containers_named(v).await.is_empty(), "{v} was removed");
    }
    assert_eq!(
        containers_named("eval-").await.len(),
        evals_before,
        "no clone left"
    );
    // Everything is in the activity feed (written in batches: polled for up to 10 s).
    let mut feed = String::new();
    for _ in 0..100 {
        feed = ops
            .invoke(&owner, "activity_read", json!({ "limit": 100 }))
            .await
            .unwrap()
            .text;
        if ["agent_evaluate", "agent_variants", "agent_promote"]
            .iter()
            .all(|op| feed.contains(op))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for op in ["agent_evaluate", "agent_variants", "agent_promote"] {
        assert!(feed.contains(op), "{op} not in the feed: {feed}");
    }
}
