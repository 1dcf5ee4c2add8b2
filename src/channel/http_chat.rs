//! The HTTP chat channel: turns started through `POST /api/chat` (and the admin page) deliver
//! their typing, progress and answer here, and whoever listens to that conversation (a
//! server-sent-events stream) hears them. Nobody listening: nothing to do, since the reply is
//! also in the conversation's history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Capabilities, Channel, ChannelError, Health, InboundTx, Outbound};
use crate::agent::llm::BoxFuture;
use crate::domain::ChatRef;

pub const CHANNEL_ID: &str = "http";

#[derive(Default)]
pub struct HttpChat {
    listeners: Mutex<HashMap<String, mpsc::UnboundedSender<Outbound>>>,
}

impl HttpChat {
    /// Listens to one conversation until the receiver drops (a later listener replaces it).
    pub fn listen(&self, conversation: &str) -> mpsc::UnboundedReceiver<Outbound> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|_, l| !l.is_closed());
        listeners.insert(conversation.to_string(), tx);
        rx
    }
}

impl Channel for HttpChat {
    fn id(&self) -> &str {
        CHANNEL_ID
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
        chat: &'a ChatRef,
        message: Outbound,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(listener) = listeners.get(&chat.chat_id) {
                let _ = listener.send(message);
            }
            Ok(())
        })
    }

    fn health(&self) -> Health {
        Health::Up
    }
}
