//! Driving the real binary: a temporary world (state dir and config file) per test, and process
//! runs that always end (timeout, then kill).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use super::FakeLlm;

pub const BIN: &str = env!("CARGO_BIN_EXE_operator");
const TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished process left.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A temporary directory with a state dir and a config file. Removed on drop.
pub struct World {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl World {
    /// A world whose config points the LLM at `llm` (or leaves it unconfigured), plus `extra`
    /// TOML appended to the file.
    pub fn new(llm: Option<&FakeLlm>, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let mut toml = format!(
            "[state]\ndir = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n",
            state.display().to_string()
        );
        if let Some(llm) = llm {
            toml.push_str(&format!(
                "[llm]\nprovider = {:?}\nbase_url = {:?}\napi_key = \"test-key\"\nmodel = \"fake-model\"\ntimeout_secs = 10\n\n",
                llm.provider(),
                llm.base_url
            ));
        }
        if !extra.contains("[docker") {
            // Conversations do not need Docker; agents created in them get no instance, fast.
            toml.push_str("[docker]\nhost = \"unix:///nonexistent/operator-test.sock\"\n\n");
        }
        toml.push_str(extra);
        let config = dir.path().join("operator.toml");
        std::fs::write(&config, toml).expect("write config");
        Self { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `operator <args> --config <file>`, feeding `stdin` and closing it.
    pub async fn run(&self, args: &[&str], stdin: &str) -> Finished {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.path());
        run_with_timeout(command, stdin).await
    }

    /// `operator <args> --config <file>` as a running child, stdin open.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.path());
        spawn(command)
    }

    /// `operator run` on this world, with extra environment; killed when dropped.
    pub fn daemon(&self, env: &[(&str, String)]) -> Child {
        let mut command = Command::new(BIN);
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .current_dir(self.path());
        for (key, value) in env {
            command.env(key, value);
        }
        spawn(command)
    }

    /// `operator chat` with one line per message.
    pub async fn chat(&self, lines: &[&str]) -> Finished {
        let mut input = lines.join("\n");
        input.push('\n');
        self.run(&["chat"], &input).await
    }
}

/// Runs a command with a clean `OPERATOR*` environment; kills it after a timeout.
pub async fn run_with_timeout(command: Command, stdin: &str) -> Finished {
    let mut child = spawn(command);
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(pipe);
    finish(child).await
}

/// Spawns with piped stdio and a clean `OPERATOR*` environment; killed when dropped.
pub fn spawn(mut command: Command) -> Child {
    for (key, _) in std::env::vars() {
        if key.starts_with("OPERATOR") {
            command.env_remove(key);
        }
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.spawn().expect("spawn operator")
}

/// Kills a daemon and returns what it logged (for failure messages).
pub async fn stop(mut child: Child) -> String {
    let _ = child.start_kill();
    match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stderr).into_owned(),
        _ => "(no output)".into(),
    }
}

/// Stops a daemon the way systemd does (SIGTERM) and waits for it to exit (killing it after a
/// timeout). A killed daemon may send an answer again after a restart (the platform accepted it
/// but the outbox row was not yet removed); a terminated one may not.
pub async fn terminate(child: Child) -> Output {
    let pid = child.id().expect("the daemon still runs").to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid}");
    match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.expect("wait for operator"),
        Err(_) => panic!("operator did not stop within {TIMEOUT:?} of SIGTERM"),
    }
}

/// Waits for the process to end (killing it after a timeout) and collects its output.
pub async fn finish(child: Child) -> Finished {
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("operator did not finish in time")
        .expect("wait for operator");
    Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
