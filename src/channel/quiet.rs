//! A channel that shows nothing: the chats of conversations the daemon has with its own agents
//! (`agent_ask`), whose replies are read from the conversation, never delivered anywhere.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Capabilities, Channel, ChannelError, Health, InboundTx, Outbound};
use crate::agent::llm::BoxFuture;
use crate::domain::ChatRef;

pub struct Quiet {
    id: String,
}

impl Quiet {
    pub fn new(id: &str) -> Self {
        Self { id: id.to_string() }
    }
}

impl Channel for Quiet {
    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: 0,
            can_edit: false,
            answers_are_stored: false,
        }
    }

    fn run(
        self: Arc<Self>,
        _inbound: InboundTx,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            shutdown.cancelled().await;
            Ok(())
        })
    }

    fn send<'a>(
        &'a self,
        _chat: &'a ChatRef,
        _message: Outbound,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async { Ok(()) })
    }

    fn health(&self) -> Health {
        Health::Up
    }
}
