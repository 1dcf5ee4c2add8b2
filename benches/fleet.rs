//! Fleet figures, measured in one run on this machine: the `exec` round trip to an instance on
//! the main engine, on a second engine over its unix socket, over TCP with TLS client
//! certificates, and over SSH (a private sshd on 127.0.0.1), as ratios to the main engine; and
//! `instance_move` of workspaces of several sizes between the two engines.
//!
//! Needs a running Docker engine, dockerd, openssl and sshd (scripts/test.sh installs them). Run
//! with `cargo bench --bench fleet`.

#[allow(dead_code)]
mod support {
    #[path = "../../tests/support/docker.rs"]
    pub mod docker;
    #[path = "../../tests/support/engine.rs"]
    pub mod engine;
    #[path = "../../tests/support/sshd.rs"]
    pub mod sshd;
}

use std::time::{Duration, Instant};

use operator::config::DockerHostSettings;
use operator::domain::Caller;
use operator::ops::Invocation;
use serde_json::json;

const EXECS: usize = 30;
const MOVES: [u64; 3] = [1, 16, 64];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        support::docker::ensure_test_image().await;
        let engine = support::engine::Engine::start(true).await;
        let sshd = support::sshd::Sshd::start().await;
        let tls = engine.tls.as_ref().unwrap();
        let mut over_tls = DockerHostSettings::new("tls", &tls.address);
        over_tls.tls_ca = Some(tls.ca.clone());
        over_tls.tls_cert = Some(tls.cert.clone());
        over_tls.tls_key = Some(tls.key.clone());
        let mut over_ssh = DockerHostSettings::new(
            "ssh",
            &format!("ssh://{}@127.0.0.1:{}", support::sshd::Sshd::user(), sshd.port),
        );
        over_ssh.ssh_key = Some(sshd.key.clone());
        over_ssh.ssh_known_hosts = Some(sshd.known_hosts.clone());
        let hosts = vec![
            DockerHostSettings::new("main", "unix:///var/run/docker.sock"),
            DockerHostSettings::new("second", &engine.unix_endpoint()),
            over_tls,
            over_ssh,
        ];
        let state = tempfile::tempdir().unwrap();
        let mut settings = operator::config::Settings::defaults();
        settings.state.dir = Some(state.path().to_path_buf());
        settings.docker.image = support::docker::TEST_IMAGE.into();
        settings.docker.packages.clear();
        settings.docker.network = "none".into();
        settings.docker.memory_mb = 256;
        settings.docker.hosts = hosts;
        let core = operator::app::build(&settings, Vec::new()).await.unwrap();
        let inv = Invocation::new(Caller::owner("bench"));
        let op = |name: &'static str, args: serde_json::Value| {
            let core = &core;
            let inv = &inv;
            async move {
                core.ops
                    .invoke(inv, name, args.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{name}({args}): {e}"))
            }
        };

        // One instance per way of reaching an engine ("tls" and "second" are the same engine).
        let suffix = format!("{:06x}", rand::random::<u32>() & 0xffffff);
        let mut names = Vec::new();
        for h in ["main", "second", "tls", "ssh"] {
            let name = format!("bench-{h}-{suffix}");
            op("instance_create", json!({ "name": name, "host": h })).await;
            names.push((h, name));
        }
        // The ssh host is the main engine too: its container is cleaned with the main ones.
        let _cleanup = support::docker::Cleanup(
            names
                .iter()
                .filter(|(h, _)| matches!(*h, "main" | "ssh"))
                .map(|(_, n)| n.clone())
                .collect(),
        );
        let mut execs = Vec::new();
        for (h, name) in &names {
            let mut times = Vec::new();
            for _ in 0..EXECS {
                let started = Instant::now();
                op("instance_exec", json!({ "name": name, "command": "true" })).await;
                times.push(started.elapsed());
            }
            execs.push((*h, median(times)));
        }

        // Moves: a workspace of N MiB from the second engine to the main one and back.
        let mut moves = Vec::new();
        for mib in MOVES {
            let name = format!("bench-move-{mib}-{suffix}");
            op("instance_create", json!({ "name": name, "host": "second" })).await;
            op(
                "instance_exec",
                json!({ "name": name, "command": format!("dd if=/dev/urandom of=/workspace/blob bs=1048576 count={mib} 2>/dev/null"), "timeout_secs": 120 }),
            )
            .await;
            let started = Instant::now();
            op("instance_move", json!({ "name": name, "host": "main" })).await;
            let there = started.elapsed();
            let started = Instant::now();
            op("instance_move", json!({ "name": name, "host": "second" })).await;
            let back = started.elapsed();
            let size = op("instance_exec", json!({ "name": name, "command": "wc -c < /workspace/blob" })).await;
            assert!(size.text.contains(&(mib * 1024 * 1024).to_string()), "{}", size.text);
            op("instance_delete", json!({ "name": name })).await;
            moves.push((mib, there, back));
        }

        let base = execs[0].1;
        println!();
        println!("| exec `true` round trip ({EXECS} runs, median) | time     | ratio to main |");
        println!("|-----------------------------------------|----------|---------------|");
        for (h, t) in &execs {
            let how = match *h {
                "main" => "main engine, unix socket",
                "second" => "second engine, unix socket",
                "tls" => "second engine, tcp:// + TLS",
                _ => "main engine through ssh://",
            };
            println!(
                "| {how:<39} | {:>5.1} ms | {:>13.2} |",
                ms(*t),
                t.as_secs_f64() / base.as_secs_f64()
            );
        }
        println!();
        println!("| instance_move, workspace size | second -> main | main -> second | MiB/s (avg) |");
        println!("|-------------------------------|----------------|----------------|-------------|");
        for (mib, there, back) in &moves {
            let rate = (2 * mib) as f64 / (there.as_secs_f64() + back.as_secs_f64());
            println!(
                "| {mib:>5} MiB                     | {:>11.0} ms | {:>11.0} ms | {rate:>11.1} |",
                ms(*there),
                ms(*back)
            );
        }
    });
}
