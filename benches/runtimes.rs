//! Agent runtimes, measured in one run on the real engine with the same fake Anthropic model:
//! the time from a message to the model's first request for a builtin agent and for a
//! `claude-code` agent (the real CLI, started in the agent's instance), and the memory of an
//! idle instance.
//!
//! Needs a running Docker engine and the Claude Code CLI that scripts/test.sh fetches
//! (`OPERATOR_TEST_CLAUDE`). Run with `cargo bench --bench runtimes`.

#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;
mod support {
    #[allow(dead_code)]
    #[path = "../../tests/support/claude.rs"]
    pub mod claude;
    #[allow(dead_code)]
    #[path = "../../tests/support/docker.rs"]
    pub mod docker;
}

use std::time::{Duration, Instant};

use llm::{FakeLlm, Vendor};
use operator::app::Core;
use operator::config::{SecretString, Settings};
use operator::domain::{Caller, ChatRef};
use operator::ops::Invocation;
use serde_json::json;

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn core(llm: &FakeLlm, state: &std::path::Path, image: &str) -> Core {
    let mut settings = Settings::defaults();
    settings.state.dir = Some(state.to_path_buf());
    settings.llm.provider = operator::config::LlmProviderKind::Anthropic;
    settings.llm.api_key = SecretString::new("bench-key");
    settings.llm.base_url = llm.base_url.clone();
    settings.docker.host = String::new();
    settings.docker.image = image.into();
    settings.docker.packages.clear();
    settings.docker.network = "none".into();
    settings.docker.memory_mb = 2048;
    settings.docker.pids_limit = 512;
    operator::app::build(&settings, Vec::new()).await.unwrap()
}

/// Time from handing a message to the router to the model's first request for it.
async fn first_request(core: &Core, llm: &FakeLlm, agent: &str, chat: String) -> Duration {
    let before = llm.completions().len();
    let started = Instant::now();
    let done = core.router.inject(
        ChatRef::new("bench", chat),
        agent.to_string(),
        Caller::owner("bench"),
        "hello".into(),
    );
    loop {
        if llm.completions().len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let _ = done.await;
    elapsed
}

/// An instance's memory use, from its cgroup (v1 or v2), in MiB.
async fn memory_mib(core: &Core, instance: &str) -> f64 {
    let out = core
        .ops
        .instances()
        .exec(
            instance,
            operator::instance::ExecRequest::new(
                "cat /sys/fs/cgroup/memory.current 2>/dev/null || cat /sys/fs/cgroup/memory/memory.usage_in_bytes",
            ),
        )
        .await
        .unwrap();
    out.output.trim().parse::<f64>().unwrap_or(f64::NAN) / (1024.0 * 1024.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let image = support::claude::ensure_claude_image().await;
    let state = tempfile::tempdir().unwrap();
    let builtin = support::docker::unique("rt-builtin");
    let cli = support::docker::unique("rt-claude");
    let _cleanup = support::docker::Cleanup(vec![builtin.clone(), cli.clone()]);
    let host_llm = FakeLlm::start(Vendor::Anthropic).await;
    host_llm.reply_when("hello", "hi");
    let core = core(&host_llm, state.path(), &image).await;
    let owner = Invocation::new(Caller::owner("bench"));
    for (name, runtime) in [(&builtin, "builtin"), (&cli, "claude-code")] {
        core.ops
            .invoke(
                &owner,
                "agent_create",
                json!({ "name": name, "persona": "Benchmarks.", "runtime": runtime }),
            )
            .await
            .unwrap();
    }
    let pid = support::claude::container_pid(&cli).await;
    let cli_llm = FakeLlm::start_in_netns(Vendor::Anthropic, pid).await;
    cli_llm.reply_when("hello", "hi");
    core.ops
        .invoke(
            &owner,
            "secret_create",
            json!({ "name": "ANTHROPIC_API_KEY", "value": "bench-key" }),
        )
        .await
        .unwrap();
    core.ops
        .invoke(
            &owner,
            "secret_grant",
            json!({ "name": "ANTHROPIC_API_KEY", "instance": cli }),
        )
        .await
        .unwrap();
    core.ops
        .invoke(
            &owner,
            "agent_update",
            json!({ "name": cli, "base_url": cli_llm.base_url }),
        )
        .await
        .unwrap();
    let idle = memory_mib(&core, &cli).await;
    let mut b = Vec::new();
    let mut c = Vec::new();
    for i in 0..RUNS {
        b.push(first_request(&core, &host_llm, &builtin, format!("b{i}")).await);
        c.push(first_request(&core, &cli_llm, &cli, format!("c{i}")).await);
    }
    let (b, c) = (median(b), median(c));
    for name in [&builtin, &cli] {
        let _ = core
            .ops
            .invoke(&owner, "agent_delete", json!({ "name": name }))
            .await;
    }
    println!("figure                                               | median");
    println!("-----------------------------------------------------|-----------");
    println!(
        "message -> first model request, builtin agent        | {:>8.2} ms",
        ms(b)
    );
    println!(
        "message -> first model request, claude-code agent    | {:>8.2} ms",
        ms(c)
    );
    println!(
        "claude-code overhead                                 | {:>8.2} ms ({:.0}x)",
        ms(c.saturating_sub(b)),
        c.as_secs_f64() / b.as_secs_f64()
    );
    println!("idle instance memory (cgroup, claude image)          | {idle:>8.1} MiB");
}
