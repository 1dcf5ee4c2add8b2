//! Usage and budgets: every model request is recorded with its tokens and cost (an unknown
//! model at the highest price, marked estimated), `/usage`, `/api/usage` and the metrics agree
//! with the records, and a spent budget stops the next turn before any model call, and skips
//! an automation's run.

use serde_json::{Value, json};

use crate::support::{FakeLlm, Vendor, World};

/// A turn with two model calls (a tool call, then the answer) is recorded as two requests, for
/// both providers, streamed; an unpriced model is counted at the highest price, estimated.
#[tokio::test]
async fn a_turn_with_two_model_calls_is_recorded_for_both_providers() {
    for vendor in [Vendor::OpenAi, Vendor::Anthropic] {
        let llm = FakeLlm::start(vendor).await;
        llm.reply_tool_calls(&[("c1", "status", "{}")]);
        llm.reply_text("All fine.");
        let world = World::new(Some(&llm), "");
        let out = world.chat(&["how are things?", "/usage"]).await;
        assert!(out.stdout.contains("All fine."), "{vendor:?}: {out:?}");
        // Each fake reply reports 10 input and 5 output tokens; the fake model has no price,
        // so the highest configured one counts (claude-opus-4*: $15 / $75 per Mtok).
        // 2 × (10 × $15 + 5 × $75) / Mtok = $0.00105.
        assert!(
            out.stdout
                .contains("(estimated), 2 requests, 20 in / 10 out tokens"),
            "{vendor:?}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("Today: $0.001"), "{}", out.stdout);
        assert!(out.stdout.contains("- operator: "), "{}", out.stdout);
        assert!(
            out.stdout.contains("- default/fake-model: "),
            "{}",
            out.stdout
        );
    }
}

/// A daily budget spent by one turn stops the next before any model call, with a message that
/// names the limit and how to raise it; an automation's run is skipped, not started; raising
/// the limit from the chat lets turns go on. `/api/usage` and the metrics agree.
#[tokio::test]
async fn a_spent_budget_stops_turns_and_skips_automations() {
    use crate::support::inproc::{core, serve};
    const TOKEN: &str = "usage-api-token";
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    // $1,000 per Mtok: one request of 10 + 5 tokens costs $0.015; the first turn's two calls
    // ($0.015 before the second) fit under $0.02, and spend it.
    let prices = "[llm.prices]\n\"fake-model\" = { input = 1000.0, output = 1000.0 }\n[budget]\ndaily_usd = 0.02\n";
    llm.reply_tool_calls(&[(
        "c1",
        "automation_create",
        &json!({ "name": "digest", "prompt": "summarize", "cron": "0 9 * * *", "timezone": "UTC" })
            .to_string(),
    )]);
    llm.reply_text("Scheduled.");
    let world = World::new(Some(&llm), prices);
    let out = world
        .chat(&["schedule a digest", "now something else"])
        .await;
    assert!(out.stdout.contains("Scheduled."), "{out:?}");
    assert!(
        out.stdout.contains(
            "the daily budget of $0.02 is spent ($0.03 so far); no model was called. Raise it with /budget_set daily <usd>"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(llm.completions().len(), 2, "no model call past the limit");
    // The owner heard when the limit passed 80%, once.
    assert_eq!(
        out.stdout
            .matches("The daily budget is 150% spent ($0.03 of $0.02).")
            .count(),
        1,
        "{}",
        out.stdout
    );

    // The automation, run now by an owner, is skipped for the budget.
    let world_core = core(Some(&llm), |s| {
        s.state.dir = Some(world.path().join("state"));
        s.budget.daily_usd = Some(0.02);
        s.llm.prices.insert(
            "fake-model".into(),
            operator::usage::Price {
                input: 1000.0,
                output: 1000.0,
                cache_read: 0.0,
                cache_write: 0.0,
            },
        );
    })
    .await;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    world_core
        .core
        .ops
        .invoke(&owner, "automation_run", json!({ "name": "digest" }))
        .await
        .unwrap();
    // The daemon's scheduler loop is not running here: one tick fires what is due.
    world_core
        .core
        .scheduler
        .tick(operator::domain::now_millis())
        .await
        .unwrap();
    world_core.core.scheduler.settle().await;
    let history = world_core
        .core
        .ops
        .invoke(&owner, "automation_history", json!({ "name": "digest" }))
        .await
        .unwrap();
    assert!(
        history.text.contains("skipped") && history.text.contains("budget"),
        "{}",
        history.text
    );
    assert_eq!(
        llm.completions().len(),
        2,
        "the skipped run called no model"
    );

    let served = serve(
        &world_core.core,
        Some(operator::http::api::token_hash(TOKEN)),
    )
    .await;
    let http = reqwest::Client::new();
    let usage: Value = http
        .get(served.url("/api/usage?since=today&by=model"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["rows"][0]["key"], "default/fake-model", "{usage}");
    assert_eq!(usage["rows"][0]["requests"], 2, "{usage}");
    assert!(
        (usage["cost_usd"].as_f64().unwrap() - 0.03).abs() < 1e-9,
        "{usage}"
    );
    assert_eq!(usage["rows"][0]["estimated"], false, "{usage}");
    let bad = http
        .get(served.url("/api/usage?by=color"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let metrics = http
        .get(served.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "operator_llm_tokens_total{agent=\"operator\",model=\"fake-model\",kind=\"input\"} 20"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("operator_llm_cost_usd_total{agent=\"operator\",model=\"fake-model\"} 0.03"),
        "{metrics}"
    );

    // Raised from the chat (an owner's command: no approval), turns go on.
    let out = world_core
        .core
        .ops
        .invoke(
            &owner,
            "budget_set",
            json!({ "scope": "daily", "usd": "5" }),
        )
        .await
        .unwrap();
    assert_eq!(out.text, "Set the daily limit to $5.00.");
    drop(world_core);
    llm.reply_text("Back in business.");
    let out = world.chat(&["and now?"]).await;
    assert!(out.stdout.contains("Back in business."), "{out:?}");
}

/// A 429 and then a 500 from the first provider fall through to the second (in its own wire
/// format); three failures in a row open the breaker, so the next request goes straight to the
/// fallback; every answer is given once, and usage is recorded for the provider that answered.
#[tokio::test]
async fn failing_requests_fall_through_and_three_failures_open_the_breaker() {
    let first = FakeLlm::start(Vendor::OpenAi).await;
    let backup = FakeLlm::start(Vendor::Anthropic).await;
    for _ in 0..3 {
        first.reply_error(429, "slow down");
        first.reply_error(500, "boom");
    }
    for i in 1..=4 {
        backup.reply_text(&format!("answer {i} from the backup"));
    }
    let world = World::new(
        None,
        &format!(
            "[llm]\nprovider = \"openai\"\nbase_url = {:?}\napi_key = \"k1\"\nmodel = \"fake-model\"\n\
             timeout_secs = 10\nfallbacks = [\"backup/claude-spare\"]\n\
             [[llm.providers]]\nname = \"backup\"\nkind = \"anthropic\"\nbase_url = {:?}\napi_key = \"k2\"\n",
            first.base_url, backup.base_url
        ),
    );
    let out = world
        .chat(&["one", "two", "three", "four", "/usage", "/status"])
        .await;
    assert!(out.success(), "{out:?}");
    for i in 1..=4 {
        assert_eq!(
            out.stdout
                .matches(&format!("answer {i} from the backup"))
                .count(),
            1,
            "{}",
            out.stdout
        );
    }
    // Two attempts for each of the first three; the fourth skipped the open breaker.
    assert_eq!(first.completions().len(), 6);
    assert_eq!(backup.completions().len(), 4);
    assert_eq!(backup.completions()[0].body["model"], "claude-spare");
    assert!(
        backup.completions()[0].body["messages"][0]["content"][0]["text"] == "one",
        "the conversation in Anthropic's format: {}",
        backup.completions()[0].body
    );
    assert!(
        out.stdout.contains("last model fallback (")
            && out.stdout.contains("answered by backup/claude-spare"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("- backup/claude-spare: "),
        "{}",
        out.stdout
    );
    let store = operator::store::Store::open(&world.path().join("state"))
        .await
        .unwrap();
    let fallbacks = store
        .activity(&operator::store::ActivityFilter {
            limit: 50,
            kind_prefix: Some("llm.fallback".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await;
    assert_eq!(fallbacks.len(), 4, "{fallbacks:?}");
}
