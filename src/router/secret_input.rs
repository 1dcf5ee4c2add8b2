//! `/secret`: values taken before anything is stored, queued or shown to a model.

use std::time::Instant;

use serde_json::json;

use super::{Router, SECRET_PROMPT_TTL};
use crate::channel::Outbound;
use crate::domain::{Caller, CallerKind, ChatRef};
use crate::ops::Invocation;

impl Router {
    /// `/secret NAME VALUE` stores the value; `/secret NAME` asks for it as the next message.
    pub(super) async fn secret_command(
        &self,
        chat: &ChatRef,
        caller: &Caller,
        rest: &str,
    ) -> Outbound {
        let rest = rest.trim();
        let (name, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if name.is_empty() {
            return Outbound::Notice("Usage: /secret NAME VALUE, or /secret NAME and then the value as the next message.".into());
        }
        if caller.kind != CallerKind::Owner {
            return Outbound::Notice("Only owners can store secrets.".into());
        }
        if value.trim().is_empty() {
            let mut pending = self
                .inner
                .pending_secrets
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.insert(chat.clone(), (name.to_string(), Instant::now()));
            return Outbound::Notice(format!(
                "Send the value of {name} as your next message. It is stored encrypted and never shown to a model."
            ));
        }
        self.store_secret(chat, caller, name, value.trim()).await
    }

    /// The secret name this chat's next message is the value of, if it asked within five minutes.
    pub(super) fn take_pending_secret(&self, chat: &ChatRef) -> Option<String> {
        let mut pending = self
            .inner
            .pending_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (name, asked) = pending.remove(chat)?;
        (asked.elapsed() < SECRET_PROMPT_TTL).then_some(name)
    }

    /// Creates the secret, or rotates it when it exists, and confirms by name only.
    pub(super) async fn store_secret(
        &self,
        chat: &ChatRef,
        caller: &Caller,
        name: &str,
        value: &str,
    ) -> Outbound {
        let inv = Invocation {
            caller: caller.clone(),
            chat: Some(chat.clone()),
            conversation_id: None,
            via_agent: None,
            progress: None,
        };
        let exists = self.inner.store.secret(name).await.is_ok();
        let (op, args) = if exists {
            ("secret_rotate", json!({ "name": name, "value": value }))
        } else {
            ("secret_create", json!({ "name": name, "value": value }))
        };
        Outbound::Notice(match self.inner.ops.invoke(&inv, op, args).await {
            Ok(out) => out.text,
            Err(e) => e.to_string(),
        })
    }
}
