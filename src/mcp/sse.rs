//! The older HTTP+SSE transport (protocol 2024-11-05), for servers that have only that: a GET
//! opens an event stream whose first `endpoint` event names where to POST; every message the
//! client sends is a POST there, and the server's messages arrive as `message` events.

use futures_util::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RoleClient, RunningService};
use sse_stream::SseStream;
use std::time::Duration;
use tokio::sync::mpsc;

use super::Handler;

/// How a failure to reach the server at all begins (the caller reports it alone).
pub(super) const UNREACHABLE: &str = "could not reach";

fn with_headers(
    mut request: reqwest::RequestBuilder,
    headers: &[(String, String)],
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
}

pub(super) async fn connect(
    handler: Handler,
    url: &str,
    headers: Vec<(String, String)>,
) -> Result<RunningService<RoleClient, Handler>, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let response = with_headers(client.get(url), &headers)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| {
            let cause = super::root_cause(&e);
            format!("{UNREACHABLE} {url}: {cause}")
        })?;
    if !response.status().is_success() {
        return Err(format!(
            "{url} answered HTTP {} to the event stream",
            response.status()
        ));
    }
    let mut events = SseStream::from_bytes_stream(response.bytes_stream());
    let endpoint = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(event))) if event.event.as_deref() == Some("endpoint") => {
                break event.data.unwrap_or_default();
            }
            Ok(Some(Ok(_))) => continue,
            _ => return Err(format!("{url} sent no endpoint event")),
        }
    };
    let post_to = reqwest::Url::parse(url)
        .and_then(|base| base.join(endpoint.trim()))
        .map_err(|e| format!("the endpoint {endpoint:?} is not a URL: {e}"))?;
    let (to_server, mut outgoing) = mpsc::channel::<ClientJsonRpcMessage>(32);
    let (incoming_tx, incoming) = mpsc::channel::<ServerJsonRpcMessage>(32);
    // The server's messages; the stream's end ends the session.
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if event.event.as_deref().unwrap_or("message") != "message" {
                continue;
            }
            let Some(data) = event.data else { continue };
            match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                Ok(message) => {
                    if incoming_tx.send(message).await.is_err() {
                        break;
                    }
                }
                Err(e) => tracing::debug!("an unreadable MCP message over SSE: {e}"),
            }
        }
    });
    // Ours, one POST each; a refused one ends the session.
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let sent = with_headers(client.post(post_to.clone()), &headers)
                .json(&message)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(
                        "an MCP server over SSE refused a message: HTTP {}",
                        r.status()
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!("an MCP server over SSE could not be reached: {e}");
                    break;
                }
            }
        }
    });
    let transport = Channels {
        to_server,
        incoming,
    };
    rmcp::serve_client(handler, transport).await.map_err(|e| {
        format!(
            "could not connect to {url} over SSE: {}",
            super::root_cause(&e)
        )
    })
}

/// The session's side of the two tasks: messages out to the POST task, in from the stream's.
struct Channels {
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
}

/// The POST task has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the connection to the MCP server is closed")]
struct Closed;

impl rmcp::transport::Transport<RoleClient> for Channels {
    type Error = Closed;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Closed>> + Send + 'static {
        let to_server = self.to_server.clone();
        async move { to_server.send(item).await.map_err(|_| Closed) }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Closed> {
        self.incoming.close();
        Ok(())
    }
}
