//! `operator run`: the daemon in process (`app::run` on port 0) and as a process under signals.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::World;
use crate::support::process::BIN;

#[tokio::test]
async fn serves_health_and_readiness_and_stops_on_request() {
    let world = World::new(None, "");
    let loaded = operator::config::load(Some(&world.config)).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(operator::app::run(loaded.settings, listener, async {
        let _ = stop_rx.await;
    }));

    let client = reqwest::Client::new();
    // 503 while the channels start, then 200.
    let mut ready = None;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await {
            ready = Some(r.status());
            if r.status() == reqwest::StatusCode::OK {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, Some(reqwest::StatusCode::OK));
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");

    stop_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), daemon)
        .await
        .expect("stops in time");
    result.unwrap().expect("clean exit");
}

#[tokio::test]
async fn sigterm_stops_the_process_cleanly() {
    let world = World::new(None, "");
    let mut child = daemon(&world)
        .env("OPERATOR_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "never ready: {seen}");

    sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn refuses_what_it_cannot_do() {
    let open = World::new(None, "");
    std::fs::write(
        &open.config,
        format!(
            "[state]\ndir = {:?}\n[admin]\nlisten = \"0.0.0.0:0\"\n",
            open.path().join("s").display().to_string()
        ),
    )
    .unwrap();
    let out = open.run(&["run"], "").await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("[admin] token is empty"),
        "{}",
        out.stderr
    );

    let telegram = World::new(None, "[telegram]\nenabled = true\n");
    let out = telegram.run(&["run"], "").await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("[telegram] token is empty"),
        "{}",
        out.stderr
    );
    let malformed = World::new(None, "[telegram]\nenabled = true\ntoken = \"nonsense\"\n");
    let out = malformed.run(&["run"], "").await;
    assert!(!out.success());
    assert!(out.stderr.contains("token is malformed"), "{}", out.stderr);
}

#[tokio::test]
async fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/operator.service"
    ))
    .unwrap();
    assert!(
        unit.contains("Type=notify") && unit.contains("WatchdogSec="),
        "{unit}"
    );
    // verify checks that ExecStart exists, so point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("operator.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/operator", BIN)).unwrap();
    let out = tokio::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .await
        .expect("systemd-analyze must be installed (Debian: systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "no warnings: {stderr}");
}

#[tokio::test]
async fn under_systemd_it_reports_ready_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;

    let world = World::new(None, "");
    let socket_path = world.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = daemon(&world)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .spawn()
        .unwrap();
    let received = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while seen
            .iter()
            .filter(|m: &&String| m.as_str() == "WATCHDOG=1")
            .count()
            < 3
        {
            match socket.recv(&mut buf) {
                Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) => panic!("no notification within 20 s ({e}); got {seen:?}"),
            }
        }
        (seen, socket)
    })
    .await
    .unwrap();
    let (seen, socket) = received;
    assert!(seen[0].starts_with("READY=1\nSTATUS=serving"), "{seen:?}");

    sigterm(&child).await;
    let stopping = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 512];
        loop {
            let n = socket.recv(&mut buf).expect("a STOPPING notification");
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if message.starts_with("STOPPING=1") {
                return message;
            }
        }
    })
    .await
    .unwrap();
    assert!(stopping.contains("STATUS=shutting down"), "{stopping}");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_when_a_message_is_processed() {
    use crate::support::{FakeLlm, Vendor};

    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text("pong");
    let world = crate::support::inproc::core(Some(&llm), |_| {}).await;
    let core = &world.core;
    let served = crate::support::inproc::serve(core, None).await;
    let addr = served.addr;

    let scrape = || async {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
            let metric = name.split('{').next().unwrap();
            assert!(
                metric.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "bad name in {line:?}"
            );
            // A histogram's series carry suffixes under the one TYPE line.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    metric
                        .strip_suffix(s)
                        .filter(|b| text.contains(&format!("# TYPE {b} histogram")))
                })
                .unwrap_or(metric);
            assert!(
                text.contains(&format!("# TYPE {base} ")),
                "no TYPE for {metric}"
            );
        }
        text
    };
    let value = |text: &str, metric: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{metric} ")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = scrape().await;
    assert_eq!(value(&before, "operator_messages_in_total"), 0);
    assert!(before.contains("operator_instances{status=\"active\"} 0"));

    core.router
        .handle(operator::channel::Inbound::direct(
            operator::domain::ChatRef::new("console", "local"),
            "local",
            "test",
            "ping",
        ))
        .await;
    let mut after = String::new();
    for _ in 0..100 {
        after = scrape().await;
        if value(&after, "operator_messages_out_total") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value(&after, "operator_messages_in_total"), 1, "{after}");
    assert_eq!(value(&after, "operator_messages_out_total"), 1, "{after}");
    // The model request was timed.
    assert_eq!(
        value(&after, "operator_llm_request_seconds_count"),
        1,
        "{after}"
    );
    assert!(
        after.contains("operator_llm_request_seconds_bucket{le=\"+Inf\"} 1"),
        "{after}"
    );
}

#[tokio::test]
async fn the_api_needs_the_admin_token_and_runs_the_control_surface_and_chat() {
    use crate::support::{FakeLlm, Vendor};
    use serde_json::{Value, json};

    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text("First answer.");
    llm.reply_text("Second answer.");
    let world = crate::support::inproc::core(Some(&llm), |_| {}).await;
    let core = &world.core;
    let hash = operator::http::api::token_hash("s3cret-admin");
    let served = crate::support::inproc::serve(core, Some(hash)).await;
    let addr = served.addr;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");

    let none = http.get(url("/api/agents")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = http
        .get(url("/api/agents"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // Forwarded-for headers never stand in for the token.
    let forwarded = http
        .get(url("/api/agents"))
        .header("X-Forwarded-For", "127.0.0.1")
        .header("Forwarded", "for=127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 401);
    assert_eq!(
        http.get(url("/healthz")).send().await.unwrap().status(),
        200,
        "health needs no token"
    );

    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("s3cret-admin");
    let created = auth(http.post(url("/api/ops/agent_create")))
        .json(&json!({ "name": "helper" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let agents: Value = auth(http.get(url("/api/agents")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents["data"]["agents"][0]["name"], "helper");
    let bad = auth(http.post(url("/api/ops/agent_create")))
        .json(&json!({ "name": "Bad Name" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_arguments"
    );
    let unknown = auth(http.post(url("/api/ops/launch")))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let first: Value = auth(http.post(url("/api/chat")))
        .json(&json!({ "message": "hello there" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["reply"], "First answer.");
    let id = first["conversation"].as_str().unwrap().to_string();
    let second: Value = auth(http.post(url("/api/chat")))
        .json(&json!({ "message": "and again", "conversation": id }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["reply"], "Second answer.");
    let history = llm.completions()[1].body.to_string();
    assert!(
        history.contains("hello there") && history.contains("First answer."),
        "continued: {history}"
    );
    let activity: Value = auth(http.get(url("/api/activity?limit=5&kind=message.")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        activity["data"]["entries"].as_array().unwrap().len() >= 2,
        "{activity}"
    );
}

/// `operator run` on the world's config, quiet, killed when dropped.
fn daemon(world: &World) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config"])
        .arg(&world.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
}
