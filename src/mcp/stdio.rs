//! A stdio server inside an instance: the command runs through an exec with stdin and stdout
//! attached (never on the daemon's host); its process id is kept in a file so the session's end
//! can end it and everything it started. Its stderr goes to the log, capped.

use std::sync::Arc;

use rmcp::service::{RoleClient, RunningService};

use super::{Handler, STDERR_LINES};
use crate::instance::files::shell_quote;
use crate::instance::{ExecRequest, InstanceBackend, kill_tree_command};

/// Ends the server's process tree in its instance.
pub(super) struct Stop {
    backend: Arc<dyn InstanceBackend>,
    instance: String,
    pid_file: String,
}

impl Stop {
    /// Runs the kill in the background (a session may end outside any async context).
    pub(super) fn run(self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(self.now());
    }

    /// Ends the process tree and waits for that.
    pub(super) async fn now(self) {
        let request = ExecRequest::new(kill_tree_command(&self.pid_file));
        if let Err(e) = self.backend.exec(&self.instance, request).await {
            tracing::debug!(instance = %self.instance, "ending an MCP server: {e}");
        }
    }
}

pub(super) async fn connect(
    handler: Handler,
    key: &str,
    backend: Arc<dyn InstanceBackend>,
    instance: String,
    command: String,
    env: Vec<(String, String)>,
    pid_file: String,
) -> Result<(RunningService<RoleClient, Handler>, Stop), String> {
    let line = format!(
        "echo $$ > {pid}; exec sh -c {cmd}",
        pid = shell_quote(&pid_file),
        cmd = shell_quote(&command)
    );
    let attached = backend
        .attach(&instance, line, env)
        .await
        .map_err(|e| format!("could not start `{command}` in instance {instance}: {e}"))?;
    let stop = Stop {
        backend,
        instance: instance.clone(),
        pid_file,
    };
    // What the server says on stderr goes to the log (capped); the last lines are kept to
    // explain a server that exits before it answers.
    let tail = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut stderr = attached.stderr;
    let (kept, server) = (tail.clone(), key.to_string());
    tokio::spawn(async move {
        let mut seen = 0usize;
        while let Some(line) = stderr.recv().await {
            seen += 1;
            if seen <= STDERR_LINES {
                tracing::info!(server = %server, "mcp stderr: {line}");
            } else if seen == STDERR_LINES + 1 {
                tracing::info!(server = %server, "mcp stderr: further lines are not logged");
            }
            let mut kept = kept.lock().unwrap();
            kept.push(line);
            if kept.len() > 5 {
                kept.remove(0);
            }
        }
    });
    match rmcp::serve_client(handler, (attached.stdout, attached.stdin)).await {
        Ok(service) => Ok((service, stop)),
        Err(e) => {
            // Give the stderr reader a moment to collect the lines of a command that died.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let said = tail.lock().unwrap().join("\n");
            stop.run();
            let said = if said.is_empty() {
                String::new()
            } else {
                format!("; it said:\n{said}")
            };
            Err(format!(
                "`{command}` in instance {instance} did not start as an MCP server ({}){said}",
                super::root_cause(&e)
            ))
        }
    }
}
