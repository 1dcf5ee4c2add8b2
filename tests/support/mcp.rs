//! MCP servers for the tests. The real one is the reference "everything" server from npm
//! (`@modelcontextprotocol/server-everything`, fetched by scripts/test.sh into the folder
//! `OPERATOR_TEST_MCP` names): over stdio inside a test instance whose image holds the host's
//! node, and over Streamable HTTP as a process on 127.0.0.1. `mcp_flaky.mjs` is a small stdio
//! server of ours in the same image for crashes and tool-list changes. [`HeaderServer`] is a
//! Streamable HTTP server in the test process that records the headers it is sent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::claude::{copy_into, libraries};
use super::docker::{busybox_rootfs, docker, import_rootfs};

/// The everything server's entry point inside the MCP test image.
pub const EVERYTHING_IN_IMAGE: &str =
    "node /opt/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio";
/// Our flaky server inside the MCP test image.
pub const FLAKY_IN_IMAGE: &str = "node /opt/mcp/flaky.mjs";
/// Our Agent Client Protocol agent inside the MCP test image.
pub const ACP_AGENT_IN_IMAGE: &str = "node /opt/mcp/acp-agent.mjs";

/// The folder with `node_modules/@modelcontextprotocol/server-everything`.
pub fn mcp_dir() -> PathBuf {
    let dir = std::env::var_os("OPERATOR_TEST_MCP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/operator/mcp-2026.8.31"));
    assert!(
        everything_entry(&dir).is_file(),
        "the MCP everything server is not in {} (scripts/test.sh fetches it with npm install)",
        dir.display()
    );
    dir
}

fn everything_entry(dir: &Path) -> PathBuf {
    dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

fn node() -> PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "node is needed (scripts/test.sh installs nodejs)"
    );
    std::fs::canonicalize(path).unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success(), "copying {}", from.display());
}

/// Builds and imports the MCP test image (busybox, node with its libraries, the everything
/// server and ours) unless it exists; returns its tag.
pub async fn ensure_mcp_image() -> String {
    let dir = mcp_dir();
    let node = node();
    let flaky = include_str!("mcp_flaky.mjs");
    let acp = include_str!("acp_agent.mjs");
    let size =
        std::fs::metadata(&node).unwrap().len() ^ ((flaky.len() as u64) << 20 | acp.len() as u64);
    let tag = format!("operator-test:mcp-{size:x}");
    let docker = docker().await;
    if docker.inspect_image(&tag).await.is_ok() {
        return tag;
    }
    let root = tempfile::tempdir().unwrap();
    let rootfs = root.path();
    busybox_rootfs(rootfs, &[]);
    for lib in libraries(&node) {
        copy_into(rootfs, &lib);
    }
    std::fs::create_dir_all(rootfs.join("usr/local/bin")).unwrap();
    std::fs::copy(&node, rootfs.join("usr/local/bin/node")).unwrap();
    std::fs::create_dir_all(rootfs.join("opt/mcp")).unwrap();
    copy_tree(&dir.join("node_modules"), &rootfs.join("opt/mcp"));
    std::fs::write(rootfs.join("opt/mcp/flaky.mjs"), flaky).unwrap();
    std::fs::write(rootfs.join("opt/mcp/acp-agent.mjs"), acp).unwrap();
    import_rootfs(&docker, rootfs, &tag).await;
    tag
}

/// The everything server over Streamable HTTP, a process listening on a free port; killed
/// when dropped.
pub struct EverythingHttp {
    child: std::process::Child,
    pub port: u16,
    /// `/mcp` (Streamable HTTP) or `/sse` (the older HTTP+SSE form).
    path: &'static str,
}

impl Drop for EverythingHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EverythingHttp {
    pub async fn start() -> Self {
        Self::start_as("streamableHttp", "/mcp").await
    }

    /// The same server in the older HTTP+SSE form (`GET /sse`, `POST /message`).
    pub async fn start_sse() -> Self {
        Self::start_as("sse", "/sse").await
    }

    async fn start_as(mode: &str, path: &'static str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(node())
            .arg(everything_entry(&mcp_dir()))
            .arg(mode)
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node");
        let server = Self { child, port, path };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the everything server did not listen on {port} within 10 s");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }
}

/// A Streamable HTTP MCP server answering with JSON: one tool, `whoami`, whose result repeats
/// the Authorization header it was sent. Keeps every request's headers.
pub struct HeaderServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HeaderServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HeaderServer {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/mcp",
                axum::routing::post(answer)
                    .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                    .delete(|| async { StatusCode::OK }),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The Authorization header of every request so far.
    pub fn authorizations(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|h| h.get("authorization"))
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn answer(
    State(seen): State<Arc<Mutex<Vec<HeaderMap>>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    seen.lock().unwrap().push(headers.clone());
    let msg: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match msg["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "headers", "version": "1.0.0" }
        }),
        "tools/list" => json!({ "tools": [{
            "name": "whoami",
            "description": "repeats the Authorization header",
            "inputSchema": { "type": "object", "properties": {} }
        }]}),
        "tools/call" => {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            json!({ "content": [{ "type": "text", "text": format!("you sent {auth}") }] })
        }
        _ => json!({}),
    };
    let body = json!({ "jsonrpc": "2.0", "id": id, "result": result });
    (
        [
            ("content-type", "application/json"),
            ("mcp-session-id", "session-1"),
        ],
        body.to_string(),
    )
        .into_response()
}
