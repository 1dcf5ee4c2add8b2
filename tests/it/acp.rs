//! The `acp` runtime against an agent written to the Agent Client Protocol's v1 schema (no
//! agent that speaks ACP runs offline here; see the issue note): the agent runs inside the
//! instance, its tool call is progress and its permission request is allowed, the second
//! message loads the same session in a new process, and `/stop` cancels a long prompt.

use serde_json::json;

use super::runtimes::chat_logged;
use crate::support::World;
use crate::support::docker::{Cleanup, unique};
use crate::support::inproc::core;
use crate::support::mcp::{ACP_AGENT_IN_IMAGE, ensure_mcp_image};

#[tokio::test]
async fn an_acp_agent_runs_in_its_instance_loads_its_session_and_stops() {
    let image = ensure_mcp_image().await;
    let agent = unique("acp");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{image}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 512\n"
    );
    let world = World::new(None, &docker);
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        crate::support::inproc::use_engine(s, &image);
    })
    .await;
    let ops = &in_process.core.ops;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    ops.invoke(
        &owner,
        "agent_create",
        json!({ "name": agent, "persona": "You take notes.", "runtime": "acp", "command": ACP_AGENT_IN_IMAGE }),
    )
    .await
    .unwrap();
    ops.invoke(
        &owner,
        "mcp_add",
        json!({ "agent": agent, "name": "notes", "command": "notes-mcp --stdio" }),
    )
    .await
    .unwrap();
    let exec = |command: &str| {
        let args = json!({ "name": agent, "command": command });
        let (ops, owner) = (ops, &owner);
        async move { ops.invoke(owner, "instance_exec", args).await.unwrap().text }
    };

    let out = chat_logged(
        &world,
        vec![
            format!("/use {agent}"),
            "write a note".into(),
            "and another".into(),
        ],
    )
    .await;
    let log = std::fs::read_to_string(world.path().join("chat.log")).unwrap_or_default();
    assert!(out.success(), "{out:?}\n{log}");
    assert!(
        out.stdout.contains("Write acp-note.txt"),
        "the tool call is progress: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Done: prompt 1 of acp-1."),
        "{}\n{log}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Done: prompt 2 of acp-1."),
        "the second message continued the session: {}",
        out.stdout
    );
    // The agent wrote in the instance's workspace, after the permission it asked for.
    assert!(exec("cat acp-note.txt").await.contains("prompt 2 of acp-1"));
    let methods = exec("cut -d' ' -f1 acp.log").await;
    // The first line is the exec's exit status.
    let methods: Vec<&str> = methods.lines().skip(1).map(str::trim).collect();
    assert!(
        methods.starts_with(&[
            "initialize",
            "session/new",
            "session/prompt",
            "initialize",
            "session/load",
            "session/prompt"
        ]),
        "{methods:?}"
    );
    let first = exec("grep session/new acp.log").await;
    assert!(
        first.contains(r#""cwd":"/workspace""#) && first.contains(r#""name":"notes""#),
        "cwd and the agent's MCP servers: {first}"
    );
    let prompts = exec("grep session/prompt acp.log").await;
    assert!(
        prompts.contains("You take notes."),
        "a new session hears its persona: {prompts}"
    );

    // /stop cancels a prompt that waits: session/cancel, and the process is ended.
    let mut console = world.spawn(&["chat"]);
    let mut stdin = console.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt;
    stdin
        .write_all(format!("/use {agent}\nplease wait\n").as_bytes())
        .await
        .unwrap();
    let mut started = false;
    let mut last = String::new();
    for _ in 0..100 {
        last = exec("grep -q 'please wait' acp.log && echo FOUND").await;
        if last.contains("FOUND") {
            started = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        started,
        "the long prompt never reached the agent: {last}\n{}",
        exec("cat acp.log").await
    );
    stdin.write_all(b"/stop\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), console.wait())
        .await
        .expect("the console ends after /stop")
        .unwrap();
    assert!(status.success());
    assert!(exec("cat acp.log").await.contains("session/cancel"));
    let ps =
        exec("echo COUNT=$(grep -l 'acp-agen[t]' /proc/[0-9]*/cmdline 2>/dev/null | wc -l)").await;
    assert!(ps.contains("COUNT=0"), "the agent's process is gone: {ps}");
}
