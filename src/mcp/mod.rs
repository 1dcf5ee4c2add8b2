//! Model Context Protocol servers, client side (the `rmcp` SDK): a server's tools become an
//! agent's tools. Two transports: a command started inside the agent's instance with stdin and
//! stdout attached (`stdio.rs`), and Streamable HTTP over the daemon's own reqwest (`http.rs`).
//!
//! A [`Hub`] keeps one session per (agent, server): connected on first use, its tool list kept
//! until the server says it changed, started again on the next use when it died. Knows no
//! agents, chats or operations: the control surface says what to connect to and with what.

mod http;
mod result;
mod sse;
mod stdio;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService};
use serde_json::Value;

use crate::agent::llm::BoxFuture;
use crate::instance::InstanceBackend;

pub use result::{ToolResult, sanitize_schema};

/// The prefix of every MCP tool's name as the model sees it: `mcp__<server>__<tool>`.
pub const TOOL_PREFIX: &str = "mcp__";
/// How long connecting (starting the server, `initialize`, listing tools) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after a failed start a server is not tried again (a test connects at once).
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Lines of a stdio server's stderr written to the log per session; the rest are counted.
const STDERR_LINES: usize = 200;
/// How long ending a server's process may take (TERM, a second, KILL, through an exec).
const STOP_WAIT: Duration = Duration::from_secs(15);

/// How to reach a server, resolved (secrets in headers filled in) when a session starts.
pub enum Connect {
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    /// A shell command run in `instance` as the instance user, with `env` as its environment.
    Stdio {
        backend: Arc<dyn InstanceBackend>,
        instance: String,
        command: String,
        env: Vec<(String, String)>,
        /// Where the command's process id is kept, to end it and its children.
        pid_file: String,
    },
}

/// A tool a server offers.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub name: String,
    pub description: String,
    /// The input schema, made acceptable to every provider.
    pub schema: Value,
}

/// A session's state as `/status`, `mcp_list` and the admin page show it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ServerState {
    pub connected: bool,
    pub tools: usize,
    pub last_error: Option<String>,
    /// Times the session was started again after it died.
    pub restarts: u32,
}

/// Sessions by key (`<agent>/<server>`, or `*/<server>` for a shared HTTP server).
#[derive(Default)]
pub struct Hub {
    sessions: std::sync::Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    session: tokio::sync::Mutex<Option<Session>>,
    state: std::sync::Mutex<ServerState>,
    /// Sessions started so far; every one after the first is a restart.
    started: std::sync::atomic::AtomicU32,
    /// When the last start failed, and why.
    failed: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

struct Session {
    service: RunningService<RoleClient, Handler>,
    tools: Option<Vec<McpTool>>,
    changed: Arc<AtomicBool>,
    /// Ends the server's process in its instance (stdio only).
    stop: Option<stdio::Stop>,
}

impl Session {
    /// The service loop ended: the process exited, the connection broke, or it was closed.
    fn dead(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.run();
        }
    }
}

/// Hears the server's notifications: a changed tool list is listed again before the next use.
#[derive(Clone)]
struct Handler {
    changed: Arc<AtomicBool>,
}

impl rmcp::ClientHandler for Handler {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.changed.store(true, Ordering::SeqCst);
        std::future::ready(())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("operator", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// What a caller supplies to start a session when there is none.
pub type ConnectFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<Connect, String>> + Send>;

impl Hub {
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut sessions = self.sessions.lock().unwrap();
        sessions.entry(key.to_string()).or_default().clone()
    }

    /// Lets the next use try to start a server that failed to start just now.
    pub fn forget_failure(&self, key: &str) {
        if let Some(slot) = self.sessions.lock().unwrap().get(key) {
            *slot.failed.lock().unwrap() = None;
        }
    }

    /// The session's state, if it was ever used.
    pub fn state(&self, key: &str) -> Option<ServerState> {
        let sessions = self.sessions.lock().unwrap();
        sessions.get(key).map(|s| s.state.lock().unwrap().clone())
    }

    /// The server's tools, connecting first when there is no live session.
    pub fn tools<'a>(
        &'a self,
        key: &'a str,
        connect: ConnectFn,
    ) -> BoxFuture<'a, Result<Vec<McpTool>, String>> {
        // Boxed here, where the lifetimes are known, so callers' futures stay `Send`.
        Box::pin(self.tools_inner(key, connect))
    }

    async fn tools_inner(&self, key: &str, connect: ConnectFn) -> Result<Vec<McpTool>, String> {
        let slot = self.slot(key);
        let mut guard = slot.session.lock().await;
        let result: Result<Vec<McpTool>, String> = async {
            let session = live_session(&mut guard, &slot, key, connect).await?;
            if session.tools.is_none() || session.changed.swap(false, Ordering::SeqCst) {
                let peer = session.service.peer().clone();
                let listed = detached(async move { peer.list_all_tools().await });
                let listed = tokio::time::timeout(CONNECT_TIMEOUT, listed)
                    .await
                    .map_err(|_| "the server did not list its tools within 60 s".to_string())?
                    .map_err(|e| format!("listing its tools failed: {e}"))?;
                let tools = listed
                    .into_iter()
                    .map(|t| {
                        let (schema, note) = sanitize_schema(&t.input_schema);
                        if let Some(note) = note {
                            tracing::info!(server = key, tool = %t.name, "schema changed: {note}");
                        }
                        McpTool {
                            name: t.name.to_string(),
                            description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                            schema,
                        }
                    })
                    .collect::<Vec<_>>();
                session.tools = Some(tools);
            }
            Ok(session.tools.clone().unwrap_or_default())
        }
        .await;
        let mut state = slot.state.lock().unwrap();
        match &result {
            Ok(tools) => {
                state.connected = true;
                state.tools = tools.len();
            }
            Err(e) => {
                state.connected = false;
                state.last_error = Some(e.clone());
            }
        }
        if result.is_err() {
            *guard = None;
        }
        result
    }

    /// Calls a tool. A call that times out, or a server that dies during it, is an error the
    /// model reads; a dead session is started again on the next use.
    pub fn call<'a>(
        &'a self,
        key: &'a str,
        tool: &'a str,
        arguments: Value,
        timeout: Duration,
        connect: ConnectFn,
    ) -> BoxFuture<'a, Result<ToolResult, String>> {
        Box::pin(self.call_inner(key, tool, arguments, timeout, connect))
    }

    async fn call_inner(
        &self,
        key: &str,
        tool: &str,
        arguments: Value,
        timeout: Duration,
        connect: ConnectFn,
    ) -> Result<ToolResult, String> {
        let slot = self.slot(key);
        let peer: Peer<RoleClient> = {
            let mut guard = slot.session.lock().await;
            match live_session(&mut guard, &slot, key, connect).await {
                Ok(session) => session.service.peer().clone(),
                Err(e) => {
                    *guard = None;
                    let mut state = slot.state.lock().unwrap();
                    state.connected = false;
                    state.last_error = Some(e.clone());
                    return Err(e);
                }
            }
        };
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = match arguments {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => return Err(format!("the arguments must be a JSON object, not {other}")),
        };
        let call = {
            let peer = peer.clone();
            detached(async move { peer.call_tool(params).await })
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(failed(
                &slot,
                format!(
                    "the tool {tool} did not answer within {} s",
                    timeout.as_secs()
                ),
            )),
            Ok(Ok(result)) => Ok(result::convert(result)),
            Ok(Err(e)) => {
                let closed = peer.is_transport_closed();
                if closed {
                    let mut guard = slot.session.lock().await;
                    if guard.as_ref().is_some_and(Session::dead) {
                        end(guard.take()).await;
                    }
                    slot.state.lock().unwrap().connected = false;
                    Err(failed(
                        &slot,
                        format!(
                            "the server stopped during the call ({e}); it is started again on the next call"
                        ),
                    ))
                } else {
                    Err(failed(&slot, format!("the call failed: {e}")))
                }
            }
        }
    }

    /// Ends the session (and its process in the instance) of one key, and waits for that.
    pub async fn close(&self, key: &str) {
        let slot = self.sessions.lock().unwrap().remove(key);
        if let Some(slot) = slot {
            let session = slot.session.lock().await.take();
            end(session).await;
        }
    }

    /// Ends every session (the daemon is stopping): no server is left running in an instance.
    pub async fn close_all(&self) {
        let keys: Vec<String> = self.sessions.lock().unwrap().keys().cloned().collect();
        let closing = keys.iter().map(|key| self.close(key));
        futures_util::future::join_all(closing).await;
    }

    /// Ends every session whose key starts with `prefix` (an agent's, `<agent>/`).
    pub async fn close_prefix(&self, prefix: &str) {
        let keys: Vec<String> = self
            .sessions
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for key in keys {
            self.close(&key).await;
        }
    }
}

/// Runs an SDK future as its own task (aborted when dropped): the SDK's futures hold types whose
/// `Send` the compiler cannot prove for every lifetime inside a caller's future.
async fn detached<T: Send + 'static>(
    future: impl Future<Output = Result<T, rmcp::ServiceError>> + Send + 'static,
) -> Result<T, rmcp::ServiceError> {
    struct Abort(tokio::task::AbortHandle);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = tokio::spawn(future);
    let _abort = Abort(task.abort_handle());
    task.await
        .unwrap_or(Err(rmcp::ServiceError::TransportClosed))
}

/// Ends a session and its process in the instance, and waits for that. A dead session is ended
/// this way before its server is started again: the new process writes its id to the same pid
/// file, and a kill still on its way (a dropped session's, in the background) would end it.
/// An engine that does not answer holds the server's next start for `STOP_WAIT` at most.
async fn end(session: Option<Session>) {
    if let Some(mut session) = session {
        let stop = session.stop.take();
        // Dropping it cancels the service; the process is ended here.
        drop(session);
        if let Some(stop) = stop
            && tokio::time::timeout(STOP_WAIT, stop.now()).await.is_err()
        {
            tracing::warn!(
                "an MCP server's process was not confirmed ended within {} s",
                STOP_WAIT.as_secs()
            );
        }
    }
}

/// Keeps `why` as the slot's last error and returns it.
fn failed(slot: &Slot, why: String) -> String {
    slot.state.lock().unwrap().last_error = Some(why.clone());
    why
}

/// The slot's session, started when there is none or the one there died.
async fn live_session<'g>(
    guard: &'g mut Option<Session>,
    slot: &Slot,
    key: &str,
    connect: ConnectFn,
) -> Result<&'g mut Session, String> {
    if guard.as_ref().is_some_and(Session::dead) {
        end(guard.take()).await;
    }
    if guard.is_none() {
        // A server that just failed to start is not tried again at once, so one that hangs
        // does not hold up every turn.
        if let Some((at, why)) = slot.failed.lock().unwrap().as_ref()
            && at.elapsed() < RETRY_AFTER
        {
            let wait = (RETRY_AFTER - at.elapsed()).as_secs() + 1;
            return Err(format!("{why} (tried again in {wait} s)"));
        }
        let started = async {
            let how = connect().await?;
            tokio::time::timeout(CONNECT_TIMEOUT, start(key, how))
                .await
                .map_err(|_| "the server did not start within 60 s".to_string())?
        };
        let session = match started.await {
            Ok(session) => session,
            Err(why) => {
                *slot.failed.lock().unwrap() = Some((std::time::Instant::now(), why.clone()));
                return Err(why);
            }
        };
        *slot.failed.lock().unwrap() = None;
        *guard = Some(session);
        let before = slot.started.fetch_add(1, Ordering::SeqCst);
        let mut state = slot.state.lock().unwrap();
        state.connected = true;
        state.restarts = before;
    }
    Ok(guard.as_mut().expect("just set"))
}

async fn start(key: &str, how: Connect) -> Result<Session, String> {
    let changed = Arc::new(AtomicBool::new(false));
    let handler = Handler {
        changed: changed.clone(),
    };
    match how {
        Connect::Http { url, headers } => {
            // A URL ending in /sse is the older HTTP+SSE form; any other is Streamable HTTP,
            // and a server that refuses that is asked in the older form before giving up.
            let connecting = tokio::spawn(async move {
                let path = url
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('/');
                if path.ends_with("/sse") {
                    return sse::connect(handler, &url, headers).await;
                }
                match http::connect(handler.clone(), &url, headers.clone()).await {
                    Ok(service) => Ok(service),
                    Err(modern) => match sse::connect(handler, &url, headers).await {
                        Ok(service) => Ok(service),
                        // Nothing answers there: that alone is the news.
                        Err(older) if older.starts_with(sse::UNREACHABLE) => Err(older),
                        Err(older) => Err(format!("{modern} (and in the older SSE form: {older})")),
                    },
                }
            });
            let service = connecting.await.map_err(|e| e.to_string())??;
            Ok(Session {
                service,
                tools: None,
                changed,
                stop: None,
            })
        }
        Connect::Stdio {
            backend,
            instance,
            command,
            env,
            pid_file,
        } => {
            let key = key.to_string();
            let connecting = tokio::spawn(async move {
                stdio::connect(handler, &key, backend, instance, command, env, pid_file).await
            });
            let (service, stop) = connecting.await.map_err(|e| e.to_string())??;
            Ok(Session {
                service,
                tools: None,
                changed,
                stop: Some(stop),
            })
        }
    }
}

/// What went wrong at the bottom of an error's chain ("Connection refused"), without the SDK's
/// layers and type names; the whole text when there is no chain.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The model-facing name of a server's tool: `mcp__<server>__<tool>`, with characters the
/// providers refuse in a tool name replaced by `_`, and at most 64 characters.
pub fn tool_name(server: &str, tool: &str) -> String {
    let name: String = format!("{TOOL_PREFIX}{server}__{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    name
}

/// The server a model-facing name belongs to (server names have no `__`).
pub fn server_of(name: &str) -> Option<&str> {
    name.strip_prefix(TOOL_PREFIX)?
        .split_once("__")
        .map(|(server, _)| server)
}
