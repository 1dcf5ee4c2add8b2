//! Agent runtimes: an agent whose runtime is `claude-code` thinks with the Claude Code CLI
//! inside its own instance. Here the CLI is a script in the instance that prints a recorded
//! transcript of Claude Code's `stream-json` output (the real CLI needs glibc and a fake
//! Anthropic server inside the container's network namespace; see the issue note): the turn
//! runs in the container, the tool use is shown as progress, the result is the reply, the
//! session is resumed on the next message and not after `/new`, `/stop` ends the process and
//! its children, and the granted key reaches the CLI and nothing else.

use serde_json::json;

use crate::support::World;
use crate::support::docker::{Cleanup, TEST_IMAGE, ensure_test_image, unique};
use crate::support::inproc::core;
use crate::support::process::{BIN, run_with_timeout};

/// `operator chat` with these lines, its log (debug) appended to chat.log in the world.
pub(crate) async fn chat_logged(
    world: &World,
    lines: Vec<String>,
) -> crate::support::process::Finished {
    let mut shell = tokio::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(format!(
            "OPERATOR_LOG=debug exec {BIN} chat --config {} 2>>{}",
            world.config.display(),
            world.path().join("chat.log").display()
        ))
        .current_dir(world.path());
    run_with_timeout(shell, &(lines.join("\n") + "\n")).await
}

/// The granted key is in no log line and no database file of the world.
fn key_is_nowhere(world: &World, key: &str) {
    let log = std::fs::read_to_string(world.path().join("chat.log")).unwrap_or_default();
    assert!(!log.contains(key), "the key is in the log");
    for file in ["operator.db", "operator.db-wal"] {
        let bytes = std::fs::read(world.path().join("state").join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(key),
            "the key is in {file}"
        );
    }
}

/// A stand-in for `claude`: records its arguments, does what a "Bash" tool use would, and prints
/// Claude Code's events; a message with "slow" starts a child that outlives a /stop unless the
/// process tree is ended.
const FAKE_CLAUDE: &str = r#"#!/bin/sh
echo "$*" >> /workspace/claude-args.log
echo "${#ANTHROPIC_API_KEY}" > /workspace/claude-key-length
session=sess-1
case "$*" in *--resume*) n=resumed;; *) n=first;; esac
case "$*" in *slow*)
  sleep 300 &
  echo $! > /workspace/child.pid
  wait
  ;;
esac
printf '%s\n' "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"$session\",\"cwd\":\"$PWD\"}"
printf '%s\n' '{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"touch made-by-claude"}}]},"session_id":"sess-1"}'
touch /workspace/made-by-claude
printf '%s\n' "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"done ($n) in $PWD, key $ANTHROPIC_API_KEY\",\"session_id\":\"$session\",\"total_cost_usd\":0.0125,\"usage\":{\"input_tokens\":7,\"output_tokens\":3}}"
"#;

#[tokio::test]
async fn a_claude_code_agent_runs_in_its_instance_resumes_and_stops() {
    ensure_test_image().await;
    let agent = unique("coder");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let key = format!("sk-ant-canary-{:016x}", rand::random::<u64>());
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(None, &docker);
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        crate::support::inproc::use_engine(s, TEST_IMAGE);
    })
    .await;
    let ops = &in_process.core.ops;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    let invoke = |op: &'static str, args: serde_json::Value| {
        let owner = &owner;
        async move { ops.invoke(owner, op, args).await.unwrap() }
    };
    // acp needs the command that starts its agent: refused without one, saying so.
    let refused = ops
        .invoke(
            &owner,
            "agent_create",
            json!({ "name": unique("cx"), "runtime": "acp" }),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("needs a command"), "{refused}");
    invoke(
        "agent_create",
        json!({ "name": agent, "persona": "You code.", "runtime": "claude-code" }),
    )
    .await;
    invoke(
        "secret_create",
        json!({ "name": "ANTHROPIC_API_KEY", "value": key }),
    )
    .await;
    invoke(
        "secret_grant",
        json!({ "name": "ANTHROPIC_API_KEY", "instance": agent }),
    )
    .await;
    invoke(
        "file_write",
        json!({ "instance": agent, "path": ".local/bin/claude", "content": FAKE_CLAUDE }),
    )
    .await;
    let exec = |command: &str| {
        let args = json!({ "name": agent, "command": command });
        async move { invoke("instance_exec", args).await.text }
    };
    exec("chmod +x .local/bin/claude").await;
    let listed = invoke("agent_list", json!({})).await.text;
    assert!(listed.contains("claude-code"), "{listed}");
    // Its MCP servers reach Claude Code through the CLI's own configuration.
    invoke(
        "mcp_add",
        json!({ "agent": agent, "name": "notes", "command": "notes-mcp --stdio" }),
    )
    .await;

    let chat = |lines: Vec<String>| chat_logged(&world, lines);
    let out = chat(vec![
        format!("/use {agent}"),
        "write a note".into(),
        "and another".into(),
    ])
    .await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("Bash: touch made-by-claude"),
        "progress: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("done (first) in /workspace"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("done (resumed) in /workspace"),
        "{}",
        out.stdout
    );
    let args = exec("cat claude-args.log").await;
    let calls: Vec<&str> = args.lines().filter(|l| l.contains("-p ")).collect();
    assert_eq!(calls.len(), 2, "{args}");
    assert!(!calls[0].contains("--resume"), "{args}");
    assert!(calls[1].contains("--resume sess-1"), "{args}");
    assert!(
        calls[0].contains("--output-format stream-json --verbose"),
        "{args}"
    );
    assert!(
        calls[0].contains(r#"--mcp-config {"mcpServers":{"notes":{"args":["-c","notes-mcp --stdio"],"command":"sh","type":"stdio"}}}"#),
        "{args}"
    );
    assert!(exec("ls made-by-claude").await.contains("made-by-claude"));
    // The key reached the CLI (by length) and nothing else.
    assert!(
        exec("cat claude-key-length")
            .await
            .contains(&key.len().to_string())
    );
    assert!(!out.stdout.contains(&key), "{}", out.stdout);

    // /new starts a fresh session; /stop, sent once the long run has started its child, ends
    // the process and the child.
    let mut console = world.spawn(&["chat"]);
    let mut stdin = console.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt;
    stdin
        .write_all(format!("/use {agent}\n/new\na slow one\n").as_bytes())
        .await
        .unwrap();
    let mut started = false;
    for _ in 0..300 {
        if exec("cat child.pid 2>/dev/null && echo PID-OK")
            .await
            .contains("PID-OK")
        {
            started = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(started, "the slow run never started");
    stdin.write_all(b"/stop\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), console.wait())
        .await
        .expect("the console ends after /stop")
        .unwrap();
    assert!(status.success());
    let args = exec("cat claude-args.log").await;
    let last = args
        .lines()
        .rfind(|l| l.contains("-p "))
        .unwrap()
        .to_string();
    assert!(
        last.contains("slow") && !last.contains("--resume"),
        "{args}"
    );
    let child = exec("echo \"pid=$(cat child.pid)=\"").await;
    let child = child
        .split("pid=")
        .nth(1)
        .and_then(|r| r.split('=').next())
        .expect("the child's pid")
        .to_string();
    let alive = exec(&format!("test -d /proc/{child} && echo alive || echo gone")).await;
    assert!(
        alive.contains("gone"),
        "the child {child} outlived /stop: {alive}"
    );

    // Usage and cost the CLI reported are recorded (two finished runs at $0.0125 each).
    let usage = invoke("usage", json!({})).await.text;
    assert!(
        usage.contains(&format!(
            "- {agent}: $0.0250, 2 requests, 14 in / 6 out tokens"
        )),
        "{usage}"
    );

    key_is_nowhere(&world, &key);
}

/// The real Claude Code CLI (native linux-x64) inside an instance with network `none`, against
/// the fake Anthropic server listening in that container's network namespace: a chat message
/// makes it call its Bash tool (a file appears in /workspace), a second message resumes the
/// session, `/stop` ends a long run, and the granted key reaches the CLI and nothing else.
#[tokio::test]
async fn the_real_claude_code_cli_works_from_chat() {
    use crate::support::claude::{container_pid, ensure_claude_image};
    use crate::support::{FakeLlm, Vendor};

    let image = ensure_claude_image().await;
    let agent = unique("claude");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let key = format!("sk-ant-canary-{:016x}", rand::random::<u64>());
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{image}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 2048\npids_limit = 512\n"
    );
    let world = World::new(None, &docker);
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        s.docker.host = String::new();
        s.docker.image = image.clone();
        s.docker.packages.clear();
        s.docker.network = "none".into();
        s.docker.memory_mb = 2048;
        s.docker.pids_limit = 512;
    })
    .await;
    let ops = &in_process.core.ops;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    let invoke = |op: &'static str, args: serde_json::Value| {
        let owner = &owner;
        async move { ops.invoke(owner, op, args).await.unwrap() }
    };
    invoke(
        "agent_create",
        json!({ "name": agent, "persona": "You keep files.", "runtime": "claude-code" }),
    )
    .await;
    let llm = FakeLlm::start_in_netns(Vendor::Anthropic, container_pid(&agent).await).await;
    invoke(
        "agent_update",
        json!({ "name": agent, "base_url": llm.base_url }),
    )
    .await;
    invoke(
        "secret_create",
        json!({ "name": "ANTHROPIC_API_KEY", "value": key }),
    )
    .await;
    invoke(
        "secret_grant",
        json!({ "name": "ANTHROPIC_API_KEY", "instance": agent }),
    )
    .await;
    let exec = |command: &str| {
        let args = json!({ "name": agent, "command": command });
        async move { invoke("instance_exec", args).await.text }
    };

    llm.reply_tool_calls(&[(
        "toolu_1",
        "Bash",
        r#"{"command":"echo made-by-claude > /workspace/from-claude.txt","description":"Write the file"}"#,
    )]);
    llm.reply_text("I wrote from-claude.txt.");
    llm.reply_text("Earlier I wrote a file for you.");
    let chat = |lines: Vec<String>| chat_logged(&world, lines);
    let out = chat(vec![
        format!("/use {agent}"),
        "please write the file".into(),
        "what did you do?".into(),
    ])
    .await;
    let log = std::fs::read_to_string(world.path().join("chat.log")).unwrap_or_default();
    assert!(out.success(), "{out:?}\n{log}");
    assert!(
        out.stdout.contains("I wrote from-claude.txt."),
        "{}\n{log}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Earlier I wrote a file for you."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Bash: echo made-by-claude"),
        "progress: {}",
        out.stdout
    );
    assert!(exec("cat from-claude.txt").await.contains("made-by-claude"));
    // The second message continued the session: its request carries the first exchange.
    let requests = llm.completions();
    let last = requests.last().unwrap();
    let body = last.body.to_string();
    assert!(
        body.contains("please write the file") && body.contains("what did you do?"),
        "{body}"
    );
    // The key came from the granted secret, and went nowhere else.
    assert_eq!(last.headers.get("x-api-key").unwrap(), key.as_str());
    assert!(!out.stdout.contains(&key));

    // /stop ends a long run: the CLI waits on a model that takes five minutes. (Ending the
    // commands a CLI started is shown with the recorded transcript above.)
    llm.reply_text_after("too late", std::time::Duration::from_secs(300));
    let before = llm.completions().len();
    let mut console = world.spawn(&["chat"]);
    let mut stdin = console.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt;
    stdin
        .write_all(format!("/use {agent}\nwait for a while\n").as_bytes())
        .await
        .unwrap();
    let asked = llm
        .wait_for_completions(before + 1, std::time::Duration::from_secs(60))
        .await;
    assert!(asked, "the long run never started");
    let running = exec("ps -o pid,args").await;
    assert!(running.contains("claude -p wait for a while"), "{running}");
    stdin.write_all(b"/stop\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), console.wait())
        .await
        .expect("the console ends after /stop")
        .unwrap();
    assert!(status.success());
    let ps = exec("ps -o pid,args").await;
    assert!(!ps.contains("claude -p"), "before: {running}\nafter: {ps}");

    key_is_nowhere(&world, &key);
}

/// A stand-in for `codex`: records its arguments and prints a recorded transcript of
/// `codex exec --json` (the event shapes of codex-rs/exec/src/exec_events.rs). No Codex CLI
/// is run: its model API (OpenAI Responses) has no fake here.
const FAKE_CODEX: &str = r#"#!/bin/sh
echo "$*" >> /workspace/codex-args.log
case "$*" in *" resume "*) n=resumed;; *) n=first;; esac
printf '%s\n' '{"type":"thread.started","thread_id":"th-42"}'
printf '%s\n' '{"type":"turn.started"}'
printf '%s\n' '{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"touch made-by-codex","aggregated_output":"","exit_code":null,"status":"in_progress"}}'
touch /workspace/made-by-codex
printf '%s\n' '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"touch made-by-codex","aggregated_output":"","exit_code":0,"status":"completed"}}'
printf '%s\n' "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_2\",\"type\":\"agent_message\",\"text\":\"codex done ($n)\"}}"
printf '%s\n' '{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":60,"output_tokens":9}}'
"#;

#[tokio::test]
async fn a_codex_agent_runs_in_its_instance_and_resumes_its_thread() {
    ensure_test_image().await;
    let agent = unique("codex");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(None, &docker);
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        crate::support::inproc::use_engine(s, TEST_IMAGE);
    })
    .await;
    let ops = &in_process.core.ops;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    for (op, args) in [
        (
            "agent_create",
            json!({ "name": agent, "persona": "You code.", "runtime": "codex" }),
        ),
        (
            "file_write",
            json!({ "instance": agent, "path": ".local/bin/codex", "content": FAKE_CODEX }),
        ),
        (
            "instance_exec",
            json!({ "name": agent, "command": "chmod +x .local/bin/codex" }),
        ),
    ] {
        ops.invoke(&owner, op, args).await.unwrap();
    }
    let out = world
        .chat(&[&format!("/use {agent}"), "make a file", "and again"])
        .await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("Shell: touch made-by-codex"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("codex done (first)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("codex done (resumed)"),
        "{}",
        out.stdout
    );
    let args = ops
        .invoke(
            &owner,
            "instance_exec",
            json!({ "name": agent, "command": "cat codex-args.log" }),
        )
        .await
        .unwrap()
        .text;
    assert!(args.contains("exec --json --skip-git-repo-check"), "{args}");
    assert!(
        args.contains("You code.") && args.contains("resume th-42 and again"),
        "{args}"
    );
}
