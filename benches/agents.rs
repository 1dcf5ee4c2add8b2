//! Operator working with its agents, measured in one run on the real engine: `@file` lookup
//! over 10,000 files in one instance (cold: the instance listed for the first time, warm: from
//! the index), and `agent_ask`'s overhead around the agent's own turn (the same turn run
//! directly, with a zero-latency fake model).
//!
//! Needs a running Docker engine (scripts/test.sh starts one). Run with
//! `cargo bench --bench agents`.

#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;
#[path = "../tests/support/docker.rs"]
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use llm::{FakeLlm, Vendor};
use operator::app::Core;
use operator::config::{SecretString, Settings};
use operator::domain::{Caller, ChatRef};
use operator::instance::ExecRequest;
use operator::ops::Invocation;
use serde_json::json;

const FILES: usize = 10_000;
const COLD: usize = 5;
const WARM: usize = 50;
const TURNS: usize = 30;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn core(llm: &FakeLlm, state: &Path) -> Core {
    let mut settings = Settings::defaults();
    settings.state.dir = Some(state.to_path_buf());
    settings.llm.api_key = SecretString::new("bench-key");
    settings.llm.base_url = llm.base_url.clone();
    settings.docker.host = String::new();
    settings.docker.image = support::TEST_IMAGE.into();
    settings.docker.packages.clear();
    settings.docker.network = "none".into();
    operator::app::build(&settings, Vec::new()).await.unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    support::ensure_test_image().await;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_when("Your name:", "ok");
    let state = tempfile::tempdir().unwrap();
    let agent = support::unique("bench");
    let _cleanup = support::Cleanup(vec![agent.clone()]);
    let owner = Invocation::new(Caller::owner("bench"));
    let mut core = core(&llm, state.path()).await;
    core.ops
        .invoke(
            &owner,
            "agent_create",
            json!({ "name": agent, "persona": "Benchmarks." }),
        )
        .await
        .unwrap();
    let fill = format!(
        "mkdir -p /workspace/many && cd /workspace/many && seq 1 {FILES} | sed 's/^/file-/; s/$/.txt/' | xargs touch && ls | wc -l"
    );
    let out = core
        .ops
        .instances()
        .exec(
            &agent,
            ExecRequest {
                command: fill,
                env: Vec::new(),
                timeout: Duration::from_secs(300),
                output_cap: 4096,
                stdin: None,
                on_output: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(out.output.trim(), FILES.to_string(), "{}", out.output);

    // Cold: a fresh core each time, so the instance is listed for the first time.
    let mut cold = Vec::new();
    for _ in 0..COLD {
        drop(core);
        core = self::core(&llm, state.path()).await;
        let started = Instant::now();
        let (found, _) = core.ops.find_files("file-5000.txt").await.unwrap();
        cold.push(started.elapsed());
        assert_eq!(found.len(), 1);
    }
    let mut warm = Vec::new();
    for _ in 0..WARM {
        let started = Instant::now();
        let (found, _) = core.ops.find_files("file-5000.txt").await.unwrap();
        warm.push(started.elapsed());
        assert_eq!(found.len(), 1);
    }

    // The agent's turn directly, then the same through agent_ask.
    let mut direct = Vec::new();
    for i in 0..TURNS {
        let started = Instant::now();
        let done = core.router.inject(
            ChatRef::new("bench", format!("direct-{i}")),
            agent.clone(),
            Caller::owner("bench"),
            "report".into(),
        );
        let (ok, _) = done.await.unwrap();
        direct.push(started.elapsed());
        assert!(ok);
    }
    let mut asked = Vec::new();
    for _ in 0..TURNS {
        let started = Instant::now();
        let out = core
            .ops
            .invoke(
                &owner,
                "agent_ask",
                json!({ "agents": [agent], "message": "report" }),
            )
            .await
            .unwrap();
        asked.push(started.elapsed());
        assert!(out.text.contains("ok"), "{}", out.text);
    }
    let _ = core
        .ops
        .invoke(&owner, "agent_delete", json!({ "name": agent }))
        .await;

    let (cold, warm, direct, asked) = (median(cold), median(warm), median(direct), median(asked));
    println!("figure                                          | median");
    println!("------------------------------------------------|---------");
    println!(
        "@file lookup, {FILES} files, cold index           | {:>7.2} ms",
        ms(cold)
    );
    println!(
        "@file lookup, {FILES} files, warm index           | {:>7.3} ms",
        ms(warm)
    );
    println!(
        "agent turn, direct (zero-latency model)         | {:>7.2} ms",
        ms(direct)
    );
    println!(
        "agent turn through agent_ask                    | {:>7.2} ms",
        ms(asked)
    );
    println!(
        "agent_ask overhead                              | {:>7.2} ms ({:.2}x)",
        ms(asked.saturating_sub(direct)),
        asked.as_secs_f64() / direct.as_secs_f64()
    );
}
