//! MCP tool calls, measured in one run on the real engine: the round trip of a trivial tool
//! (`echo` of the npm "everything" server) over stdio inside an agent's instance and over
//! Streamable HTTP on 127.0.0.1, against a built-in `run_command` (`echo`) in the same instance.
//! Each is the control surface's call as a turn makes it (`Ops::mcp_call`, `Ops::invoke`),
//! after one warm-up call that starts the session.
//!
//! Needs a running Docker engine, node, and the everything server that scripts/test.sh fetches
//! (`OPERATOR_TEST_MCP`). Run with `cargo bench --bench mcp`.

mod support {
    #[allow(dead_code)]
    #[path = "../../tests/support/claude.rs"]
    pub mod claude;
    #[allow(dead_code)]
    #[path = "../../tests/support/docker.rs"]
    pub mod docker;
    #[allow(dead_code)]
    #[path = "../../tests/support/mcp.rs"]
    pub mod mcp;
}

use std::time::{Duration, Instant};

use operator::config::{McpServerSettings, Settings};
use operator::domain::Caller;
use operator::ops::Invocation;
use serde_json::json;

const RUNS: usize = 50;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

#[tokio::main]
async fn main() {
    let image = support::mcp::ensure_mcp_image().await;
    let http = support::mcp::EverythingHttp::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut settings = Settings::defaults();
    settings.state.dir = Some(state.path().to_path_buf());
    settings.docker.host = String::new();
    settings.docker.image = image;
    settings.docker.packages.clear();
    settings.docker.network = "none".into();
    settings.docker.memory_mb = 1024;
    settings.mcp.servers.push(McpServerSettings {
        name: "web".into(),
        url: Some(http.url()),
        ..Default::default()
    });
    let core = operator::app::build(&settings, Vec::new()).await.unwrap();
    let ops = &core.ops;
    let agent = format!("mcpbench-{:06x}", rand::random::<u32>() & 0xffffff);
    let _cleanup = support::docker::Cleanup(vec![agent.clone()]);
    let owner = Invocation::new(Caller::owner("bench"));
    ops.invoke(&owner, "agent_create", json!({ "name": agent }))
        .await
        .unwrap();
    ops.invoke(
        &owner,
        "mcp_add",
        json!({ "agent": agent, "name": "local", "command": support::mcp::EVERYTHING_IN_IMAGE }),
    )
    .await
    .unwrap();
    let mut as_agent = Invocation::new(Caller::owner("bench"));
    as_agent.via_agent = Some(agent.clone());

    let echo = || json!({ "message": "ping" });
    let mut stdio = Vec::new();
    let mut remote = Vec::new();
    let mut builtin = Vec::new();
    // Warm-up: the first call starts each session (and node in the instance).
    let started = Instant::now();
    ops.mcp_call(&as_agent, &agent, "local", "echo", echo())
        .await
        .unwrap();
    let stdio_start = started.elapsed();
    let started = Instant::now();
    ops.mcp_call(&as_agent, &agent, "web", "echo", echo())
        .await
        .unwrap();
    let http_start = started.elapsed();
    ops.invoke(&as_agent, "run_command", json!({ "command": "echo ping" }))
        .await
        .unwrap();
    // Interleaved, so the three share the machine's state.
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = ops
            .mcp_call(&as_agent, &agent, "local", "echo", echo())
            .await
            .unwrap();
        stdio.push(t.elapsed());
        assert!(r.text.contains("Echo: ping"));
        let t = Instant::now();
        let r = ops
            .mcp_call(&as_agent, &agent, "web", "echo", echo())
            .await
            .unwrap();
        remote.push(t.elapsed());
        assert!(r.text.contains("Echo: ping"));
        let t = Instant::now();
        let r = ops
            .invoke(&as_agent, "run_command", json!({ "command": "echo ping" }))
            .await
            .unwrap();
        builtin.push(t.elapsed());
        assert!(r.text.contains("ping"));
    }
    let base = stats(builtin);
    let rows = [
        ("run_command (built-in, docker exec)", base),
        ("MCP stdio in the instance (echo)", stats(stdio)),
        ("MCP Streamable HTTP, 127.0.0.1 (echo)", stats(remote)),
    ];
    let b50 = base.0;
    println!("\nMCP tool call round trip, {RUNS} calls each, interleaved (2 cores)\n");
    println!("| call | median | p90 | median vs run_command |");
    println!("|---|---|---|---|");
    for (name, (p50, p90)) in rows {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2}x |",
            ms(p50),
            ms(p90),
            p50.as_secs_f64() / b50.as_secs_f64()
        );
    }
    println!(
        "\nfirst call (session start): stdio {:.0} ms (node started in the instance), HTTP {:.0} ms",
        ms(stdio_start),
        ms(http_start)
    );
}
