//! Instance figures, as ratios measured in one run on the same engine:
//! exec round trip through the daemon (control surface -> bollard) vs the `docker exec` CLI, and
//! instance create-to-running vs `docker run -d` with the same hardened settings.
//!
//! Needs a running Docker engine (scripts/test.sh starts one). Run with
//! `cargo bench --bench instances`.

#[path = "../tests/support/docker.rs"]
#[allow(dead_code)]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use operator::domain::Caller;
use operator::ops::Invocation;
use serde_json::json;

const EXECS: usize = 30;
const CREATES: usize = 6;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn docker_cli(args: &[&str]) {
    let status = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        status.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        support::ensure_test_image().await;
        let state = tempfile::tempdir().unwrap();
        let mut settings = operator::config::Settings::defaults();
        settings.state.dir = Some(state.path().to_path_buf());
        settings.docker.image = support::TEST_IMAGE.into();
        settings.docker.packages.clear();
        settings.docker.network = "none".into();
        settings.docker.memory_mb = 256;
        let core = operator::app::build(&settings, Vec::new()).await.unwrap();
        let inv = Invocation::new(Caller::owner("bench"));

        let mut ours_create = Vec::new();
        let mut cli_create = Vec::new();
        let mut names = Vec::new();
        for i in 0..CREATES {
            let name = format!("bench-{i}-{:06x}", rand::random::<u32>() & 0xffffff);
            let started = Instant::now();
            core.ops.invoke(&inv, "instance_create", json!({ "name": name })).await.expect("create");
            ours_create.push(started.elapsed());
            names.push(name.clone());

            let cli = format!("operator-cli-{name}");
            let volume = format!("type=volume,src={cli}-ws,dst=/workspace");
            let started = Instant::now();
            docker_cli(&[
                "run", "-d", "--name", &cli, "--user", "1000:1000", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges:true", "--read-only",
                "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m,mode=1777",
                "--tmpfs", "/run:rw,nosuid,nodev,noexec,size=16m,mode=755",
                "--init", "--memory", "256m", "--memory-swap", "256m", "--cpus", "1",
                "--pids-limit", "256", "--network", "none", "--mount", &volume,
                "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
                "--restart", "unless-stopped", "-w", "/workspace",
                support::TEST_IMAGE, "sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
            ]);
            cli_create.push(started.elapsed());
        }
        let _cleanup = support::Cleanup(names.clone());

        let target = &names[0];
        let container = format!("operator-{target}");
        let mut ours_exec = Vec::new();
        let mut cli_exec = Vec::new();
        for _ in 0..EXECS {
            let started = Instant::now();
            let out = core
                .ops
                .invoke(&inv, "instance_exec", json!({ "name": target, "command": "true" }))
                .await
                .expect("exec");
            ours_exec.push(started.elapsed());
            assert_eq!(out.data["exit_code"], 0);

            let started = Instant::now();
            docker_cli(&["exec", "-u", "1000:1000", &container, "true"]);
            cli_exec.push(started.elapsed());
        }

        for name in &names {
            let cli = format!("operator-cli-{name}");
            let _ = Command::new("docker").args(["rm", "-f", &cli]).output();
            let _ = Command::new("docker").args(["volume", "rm", "-f", &format!("{cli}-ws")]).output();
        }

        let (oe, ce) = (median(ours_exec), median(cli_exec));
        let (oc, cc) = (median(ours_create), median(cli_create));
        println!();
        println!("| figure (median)                               | daemon    | docker CLI | ratio |");
        println!("|-----------------------------------------------|-----------|------------|-------|");
        println!(
            "| exec `true` round trip ({EXECS} runs)              | {:>6.1} ms | {:>7.1} ms | {:>5.2} |",
            ms(oe),
            ms(ce),
            oe.as_secs_f64() / ce.as_secs_f64()
        );
        println!(
            "| create to running, fresh workspace ({CREATES} runs)   | {:>6.1} ms | {:>7.1} ms | {:>5.2} |",
            ms(oc),
            ms(cc),
            oc.as_secs_f64() / cc.as_secs_f64()
        );
    });
}
