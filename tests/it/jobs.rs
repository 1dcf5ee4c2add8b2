//! Background jobs: progress, results, restarts, and the agent told in its conversation.

use serde_json::json;

use operator::app;

use crate::fleet::Fleet;
use crate::support::docker::{Cleanup, TEST_IMAGE, ensure_test_image, unique};

/// Collects job events for assertions.
#[derive(Default)]
struct Events {
    progress: std::sync::Mutex<Vec<String>>,
    finished: std::sync::Mutex<Vec<String>>,
}

impl operator::ops::JobEvents for Events {
    fn progress(&self, _job: &operator::store::JobRecord, text: String) {
        self.progress.lock().unwrap().push(text);
    }
    fn finished(&self, _job: &operator::store::JobRecord, report: String) {
        self.finished.lock().unwrap().push(report);
    }
}

/// Polls until `n` jobs have finished (or 90 seconds pass: a container restart can take long
/// while the whole suite drives the engine at once).
async fn poll_until_finished(fleet: &Fleet, events: &Events, n: usize) {
    for _ in 0..450 {
        fleet.core.ops.poll_jobs(events).await.unwrap();
        if events.finished.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("jobs did not finish: {:?}", events.finished.lock().unwrap());
}

#[tokio::test]
async fn background_jobs_report_progress_and_results_and_outlive_a_restart() {
    let fleet = Fleet::new().await;
    let name = unique("job");
    let _cleanup = Cleanup(vec![name.clone()]);
    fleet.ok("instance_create", json!({ "name": name })).await;

    let started = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "echo working; sleep 2; echo nearly; exit 3", "background": true }),
        )
        .await;
    assert!(
        started.text.starts_with("Started job #"),
        "{}",
        started.text
    );
    let events = Events::default();
    fleet.core.ops.poll_jobs(&events).await.unwrap();
    assert!(
        events.progress.lock().unwrap()[0].contains("running"),
        "{:?}",
        events.progress.lock().unwrap()
    );

    // A second daemon over the same state (a restart) follows the job to its end.
    let settings = {
        let mut s = operator::config::Settings::defaults();
        s.state.dir = Some(fleet.state.path().to_path_buf());
        s
    };
    let restarted = Fleet {
        core: app::build(&settings, Vec::new()).await.unwrap(),
        state: tempfile::tempdir().unwrap(),
    };
    poll_until_finished(&restarted, &events, 1).await;
    let report = events.finished.lock().unwrap()[0].clone();
    assert!(
        report.contains("finished with exit 3") && report.contains("Last output line: nearly"),
        "{report}"
    );
    // Reported once: the first daemon finds nothing left to report.
    fleet.core.ops.poll_jobs(&events).await.unwrap();
    assert_eq!(events.finished.lock().unwrap().len(), 1);
    let summary = fleet.core.ops.jobs_summary().await.unwrap();
    assert!(
        summary.contains("background jobs running: 0") && summary.contains("last failed job"),
        "{summary}"
    );

    // A job whose container restarts under it is lost, and said so; so is one whose instance
    // is stopped under it (nothing runs in a stopped container).
    for (operation, reports) in [("instance_restart", 2), ("instance_stop", 3)] {
        fleet
            .ok(
                "instance_exec",
                json!({ "name": name, "command": "sleep 60", "background": true }),
            )
            .await;
        fleet.ok(operation, json!({ "targets": [name] })).await;
        poll_until_finished(&fleet, &events, reports).await;
        let finished = events.finished.lock().unwrap();
        assert!(
            finished[reports - 1].contains("was lost"),
            "{operation}: {finished:?}"
        );
    }
}

/// An agent starts long work; the chat sees progress, and when the work ends the agent is
/// told in the same conversation and reports.
#[tokio::test]
async fn an_agent_is_told_when_its_background_work_ends() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    use crate::support::{FakeLlm, Vendor, World};

    ensure_test_image().await;
    let name = unique("worker");
    let _cleanup = Cleanup(vec![name.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[("c1", "agent_create", &json!({ "name": name }).to_string())]);
    llm.reply_text("Ready.");
    llm.reply_tool_calls(&[(
        "c2",
        "run_command",
        r#"{"command":"echo building; sleep 2; echo all-done","background":true}"#,
    )]);
    llm.reply_text("Started the build.");
    llm.reply_text("The build finished: all-done.");
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(Some(&llm), &docker);
    let mut child = world.spawn(&["chat"]);
    let mut stdin = child.stdin.take().unwrap();
    let script = format!("make a worker\n/use {name}\nbuild it\n");
    stdin.write_all(script.as_bytes()).await.unwrap();
    assert!(
        llm.wait_for_completions(5, Duration::from_secs(60)).await,
        "the result came back"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stdin.write_all(b"/status\n").await.unwrap();
    drop(stdin);
    let out = crate::support::process::finish(child).await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("Started the build."), "{}", out.stdout);
    assert!(
        out.stdout.contains("The build finished: all-done."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("background jobs running: 0"),
        "{}",
        out.stdout
    );

    let report = llm.completions()[4].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        report.contains(&format!("on {name} finished with exit 0")),
        "{report}"
    );
    assert!(report.contains("Last output line: all-done"), "{report}");
}
