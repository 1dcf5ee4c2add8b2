//! MCP servers as agents' tools, against real servers: the npm "everything" server over stdio
//! inside an agent's instance and over Streamable HTTP on 127.0.0.1; a secret in a header; a
//! server that dies mid-call; tools that change between turns.

use serde_json::{Value, json};

use crate::support::docker::{Cleanup, unique};
use crate::support::inproc::{InProcess, core, serve, use_engine};
use crate::support::llm::tool_results;
use crate::support::mcp::{
    EVERYTHING_IN_IMAGE, EverythingHttp, FLAKY_IN_IMAGE, HeaderServer, ensure_mcp_image,
};
use crate::support::{FakeLlm, Vendor};
use operator::domain::Caller;
use operator::ops::Invocation;

fn owner() -> Invocation {
    Invocation::new(Caller::owner("test"))
}

async fn invoke(world: &InProcess, op: &str, args: Value) -> operator::ops::Output {
    world
        .core
        .ops
        .invoke(&owner(), op, args)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// Asks `agent` one message through Operator's `agent_ask` and returns its reply.
async fn ask(world: &InProcess, agent: &str, message: &str) -> String {
    let out = invoke(
        world,
        "agent_ask",
        json!({ "agents": [agent], "message": message, "wait": 120 }),
    )
    .await;
    out.text
}

/// Sends Operator one message over `/api/chat` and returns its reply.
async fn operator_says(world: &InProcess, message: &str) -> String {
    const TOKEN: &str = "mcp-test-token";
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        reqwest::Client::new()
            .post(served.url("/api/chat"))
            .bearer_auth(TOKEN)
            .json(&json!({ "message": message }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    })
    .await
    .expect("Operator answers within two minutes");
    answer["reply"].as_str().unwrap_or_default().to_string()
}

/// A core whose config gives every agent (and Operator) the HTTP server `name` at `url`.
async fn with_config_server(
    llm: &FakeLlm,
    name: &str,
    url: String,
    headers: &[(&str, &str)],
) -> InProcess {
    let server = operator::config::McpServerSettings {
        name: name.into(),
        url: Some(url),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    core(Some(llm), move |s| s.mcp.servers.push(server)).await
}

/// Asks Operator to add `a` and `b` with the server's `get-sum` and returns the tool results
/// its model read.
async fn sum_through(
    world: &InProcess,
    llm: &FakeLlm,
    server: &str,
    a: i64,
    b: i64,
) -> Vec<String> {
    let tool = format!("mcp__{server}__get-sum");
    llm.reply_tool_calls(&[("s1", tool.as_str(), &json!({ "a": a, "b": b }).to_string())]);
    llm.reply_text("Added.");
    let reply = operator_says(world, &format!("add {a} and {b}")).await;
    assert!(reply.contains("Added."), "{reply}");
    tool_results(&llm.completions().last().unwrap().body)
}

/// The tool names of a recorded model request.
fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Creates `agent` (with its instance) and gives it the stdio server `name` running `command`;
/// returns what mcp_add said.
async fn agent_with_server(world: &InProcess, agent: &str, name: &str, command: &str) -> String {
    invoke(
        world,
        "agent_create",
        json!({ "name": agent, "persona": "You use tools." }),
    )
    .await;
    invoke(
        world,
        "mcp_add",
        json!({ "agent": agent, "name": name, "command": command }),
    )
    .await
    .text
}

/// The requests the model saw from `agent` (by its name in the system prompt).
fn requests_of(llm: &FakeLlm, agent: &str) -> Vec<Value> {
    llm.completions()
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b.to_string().contains(&format!("Your name: {agent}.")))
        .collect()
}

#[tokio::test]
async fn an_npm_server_runs_over_stdio_inside_the_instance_and_its_tool_is_called() {
    let image = ensure_mcp_image().await;
    let agent = unique("mcpio");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = core(Some(&llm), |s| use_engine(s, &image)).await;
    let added = agent_with_server(&world, &agent, "everything", EVERYTHING_IN_IMAGE).await;
    assert!(added.contains("mcp__everything__"), "{added}");
    let tested = invoke(
        &world,
        "mcp_test",
        json!({ "agent": agent, "name": "everything" }),
    )
    .await;
    assert!(
        tested.text.contains("echo") && tested.text.contains("get-sum"),
        "{}",
        tested.text
    );

    llm.reply_tool_calls(&[(
        "m1",
        "mcp__everything__echo",
        r#"{"message":"hello over stdio"}"#,
    )]);
    llm.reply_text("The server echoed it.");
    let reply = ask(&world, &agent, "echo something").await;
    assert!(reply.contains("The server echoed it."), "{reply}");
    let seen = requests_of(&llm, &agent);
    assert!(
        tool_names(&seen[0]).contains(&"mcp__everything__echo".to_string()),
        "{:?}",
        tool_names(&seen[0])
    );
    let results = tool_results(seen.last().unwrap());
    assert!(
        results.iter().any(|r| r.contains("Echo: hello over stdio")),
        "{results:?}"
    );

    // The server is a process in the agent's container, not on this host.
    let ps = invoke(
        &world,
        "instance_exec",
        json!({ "name": agent, "command": "cat /proc/$(cat /tmp/operator-mcp-everything.pid)/cmdline | tr '\\0' ' '" }),
    )
    .await;
    assert!(ps.text.contains("server-everything"), "{}", ps.text);
    let listed = invoke(&world, "mcp_list", json!({ "agent": agent })).await;
    assert!(
        listed.text.contains("everything (stdio): connected"),
        "{}",
        listed.text
    );

    // Removing the server ends its process.
    invoke(
        &world,
        "mcp_remove",
        json!({ "agent": agent, "name": "everything" }),
    )
    .await;
    let mut gone = false;
    for _ in 0..50 {
        let out = invoke(
            &world,
            "instance_exec",
            json!({ "name": agent, "command": "echo COUNT=$(grep -l 'server-everythin[g]' /proc/[0-9]*/cmdline 2>/dev/null | wc -l)" }),
        )
        .await;
        if out.text.contains("COUNT=0") {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(gone, "the server's process is ended after mcp_remove");
}

#[tokio::test]
async fn an_http_server_on_loopback_serves_operator_through_the_config() {
    let server = EverythingHttp::start().await;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = with_config_server(&llm, "web", server.url(), &[]).await;
    let results = sum_through(&world, &llm, "web", 2, 3).await;
    assert!(
        results.iter().any(|r| r.contains("is 5")),
        "the sum reached the model: {results:?}"
    );
    let first = &llm.completions()[0].body;
    assert!(
        tool_names(first).contains(&"mcp__web__get-sum".to_string()),
        "{:?}",
        tool_names(first)
    );
    let agents = invoke(&world, "agent_list", json!({})).await;
    assert!(
        agents
            .text
            .contains("MCP servers of every agent: web: connected"),
        "{}",
        agents.text
    );
    let status = invoke(&world, "status", json!({})).await;
    assert!(
        status
            .text
            .contains("mcp every agent · web (http, config): connected"),
        "{}",
        status.text
    );
}

#[tokio::test]
async fn a_server_with_only_the_older_sse_form_is_reached_too() {
    let server = EverythingHttp::start_sse().await;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = with_config_server(&llm, "old", server.url(), &[]).await;
    let results = sum_through(&world, &llm, "old", 20, 22).await;
    assert!(results.iter().any(|r| r.contains("is 42")), "{results:?}");
}

#[tokio::test]
async fn a_secret_in_a_header_reaches_the_server_and_nothing_else() {
    let server = HeaderServer::start().await;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let canary = format!("canary-{}", unique("tok"));
    let auth = [("Authorization", "Bearer ${secret:GH_TOKEN}")];
    let world = with_config_server(&llm, "gh", server.url(), &auth).await;
    invoke(
        &world,
        "secret_create",
        json!({ "name": "GH_TOKEN", "value": canary }),
    )
    .await;
    llm.reply_tool_calls(&[("w1", "mcp__gh__whoami", "{}")]);
    llm.reply_text("Checked.");
    let reply = operator_says(&world, "who am I on github?").await;
    assert!(reply.contains("Checked."), "{reply}");
    assert!(
        server
            .authorizations()
            .iter()
            .all(|a| *a == format!("Bearer {canary}")),
        "{:?}",
        server.authorizations()
    );
    assert!(!server.authorizations().is_empty());
    // The server repeated the token; the model read it redacted.
    let results = tool_results(&llm.completions().last().unwrap().body);
    assert!(
        results
            .iter()
            .any(|r| r.contains("you sent Bearer [secret:GH_TOKEN]")),
        "{results:?}"
    );
    for request in llm.requests() {
        assert!(!request.body.to_string().contains(&canary));
    }
    let listed = invoke(&world, "mcp_list", json!({})).await;
    assert!(!format!("{listed:?}").contains(&canary));
    let feed = invoke(&world, "activity_read", json!({ "limit": 100 })).await;
    assert!(!format!("{feed:?}").contains(&canary));
    for entry in std::fs::read_dir(world.state.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn a_server_that_dies_mid_call_is_restarted_and_changed_tools_are_seen() {
    let image = ensure_mcp_image().await;
    let agent = unique("mcpfl");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = core(Some(&llm), |s| use_engine(s, &image)).await;
    agent_with_server(&world, &agent, "flaky", FLAKY_IN_IMAGE).await;
    llm.reply_tool_calls(&[("f1", "mcp__flaky__pid", "{}")]);
    llm.reply_tool_calls(&[("f2", "mcp__flaky__crash", "{}")]);
    llm.reply_tool_calls(&[("f3", "mcp__flaky__pid", "{}")]);
    llm.reply_tool_calls(&[("f4", "mcp__flaky__grow", "{}")]);
    llm.reply_text("Survived.");
    let reply = ask(&world, &agent, "exercise the flaky server").await;
    assert!(reply.contains("Survived."), "{reply}");
    let seen = requests_of(&llm, &agent);
    let results = tool_results(seen.last().unwrap());
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results[0].starts_with("pid "), "{results:?}");
    assert!(
        results[1].contains("stopped during the call"),
        "the crash is an error result: {results:?}"
    );
    assert!(results[2].starts_with("pid "), "restarted: {results:?}");
    assert_ne!(results[0], results[2], "a new process answered");
    assert_eq!(results[3], "grown");
    let listed = invoke(&world, "mcp_list", json!({ "agent": agent })).await;
    assert!(listed.text.contains("restarted 1 time"), "{}", listed.text);

    // The next turn sees the tool the server added, and a server given between turns.
    invoke(
        &world,
        "mcp_add",
        json!({ "agent": agent, "name": "more", "command": EVERYTHING_IN_IMAGE }),
    )
    .await;
    llm.reply_text("Noted.");
    ask(&world, &agent, "what can you do now?").await;
    let last = requests_of(&llm, &agent).last().unwrap().clone();
    let names = tool_names(&last);
    assert!(
        names.contains(&"mcp__flaky__extra".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"mcp__more__echo".to_string()), "{names:?}");
}

#[tokio::test]
async fn check_reports_the_config_servers_and_a_bad_one_by_key() {
    let server = HeaderServer::start().await;
    let config = format!(
        "[[mcp.servers]]\nname = \"hdr\"\nurl = \"{}\"\n\n[[mcp.servers]]\nname = \"time\"\ncommand = \"uvx mcp-server-time\"\n\n[[mcp.servers]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
        server.url()
    );
    let world = crate::support::World::new(None, &config);
    let out = world.run(&["check"], "").await;
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("hdr ("), "{said}");
    assert!(said.contains("answers with 1 tool(s)"), "{said}");
    assert!(
        said.contains("time: stdio `uvx mcp-server-time`, started inside each agent's instance"),
        "{said}"
    );
    assert!(said.contains("gone (http://127.0.0.1:9/mcp)"), "{said}");
    assert!(!out.success(), "an unreachable server is an error: {said}");

    let world =
        crate::support::World::new(None, "[[mcp.servers]]\nname = \"Bad\"\ncommand = \"x\"\n");
    let out = world.run(&["check"], "").await;
    assert!(!out.success());
    assert!(out.stderr.contains("mcp.servers[0].name"), "{}", out.stderr);
}

#[tokio::test]
async fn a_stopping_daemon_leaves_no_server_running_in_an_instance() {
    let image = ensure_mcp_image().await;
    let agent = unique("mcpend");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{image}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = crate::support::World::new(Some(&llm), &docker);
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        use_engine(s, &image);
    })
    .await;
    agent_with_server(&in_process, &agent, "flaky", FLAKY_IN_IMAGE).await;
    llm.reply_tool_calls(&[("p1", "mcp__flaky__pid", "{}")]);
    llm.reply_text("Done.");
    let out = world
        .chat(&[&format!("/use {agent}"), "what is your pid?"])
        .await;
    assert!(out.stdout.contains("Done."), "{out:?}");
    let results = tool_results(&llm.completions().last().unwrap().body);
    assert!(results.iter().any(|r| r.starts_with("pid ")), "{results:?}");
    // The console has exited; the server it started in the instance is gone with it.
    let left = invoke(
        &in_process,
        "instance_exec",
        json!({ "name": agent, "command": "echo COUNT=$(grep -l 'flaky[.]mjs' /proc/[0-9]*/cmdline 2>/dev/null | wc -l)" }),
    )
    .await;
    assert!(left.text.contains("COUNT=0"), "{}", left.text);
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_named_and_not_retried_every_turn() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = with_config_server(&llm, "down", "http://127.0.0.1:9/mcp".into(), &[]).await;
    llm.reply_text("Working without it.");
    llm.reply_text("Still without it.");
    assert!(
        operator_says(&world, "hello")
            .await
            .contains("Working without it.")
    );
    assert!(
        operator_says(&world, "again")
            .await
            .contains("Still without it.")
    );
    let requests = llm.completions();
    let first = requests[0].body.to_string();
    let second = requests[1].body.to_string();
    assert!(
        first.contains("not available now: MCP server down"),
        "the model is told: {first}"
    );
    assert!(
        second.contains("tried again in"),
        "the next turn does not wait on it again: {second}"
    );
    assert!(
        !tool_names(&requests[0].body)
            .iter()
            .any(|t| t.starts_with("mcp__"))
    );
}
