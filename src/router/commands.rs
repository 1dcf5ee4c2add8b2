//! The chat commands a chat's worker answers in order: `/start`, `/new`, `/export`, `/backup`,
//! `/stop`, and every control-surface command (`/agents`, `/status`, ...) through `Ops`.

use std::sync::Arc;

use serde_json::json;

use super::Router;
use crate::channel::Outbound;
use crate::domain::{Caller, ChatRef, SESSION_COMMANDS};
use crate::ops::{Invocation, Ops, ProgressSink};
use crate::store::NewActivity;

impl Router {
    /// Answers a chat command taken in its chat's order (the immediate ones are answered in
    /// `handle`): the session commands here, the rest through the control surface.
    pub(super) async fn command(
        &self,
        chat: &ChatRef,
        caller: &Caller,
        command: &str,
        rest: &str,
    ) -> Option<Outbound> {
        let (hub, status_chat) = (self.inner.hub.clone(), chat.clone());
        let sink = ProgressSink(Arc::new(move |key, text| {
            let (hub, chat) = (hub.clone(), status_chat.clone());
            tokio::spawn(async move { hub.deliver(&chat, Outbound::Status { key, text }).await });
        }));
        let inv = Invocation {
            caller: caller.clone(),
            chat: Some(chat.clone()),
            conversation_id: None,
            via_agent: None,
            progress: Some(sink),
        };
        match command {
            "start" => {
                let help = self.inner.ops.invoke(&inv, "help", json!({})).await;
                let help = help.map(|o| o.text).unwrap_or_default();
                Some(Outbound::Notice(format!(
                    "Hi, I'm Operator. I run your agents on this server.\n{help}"
                )))
            }
            "new" => Some(match self.inner.store.close_conversations(chat).await {
                Ok(_) => {
                    self.record(NewActivity {
                        kind: "conversation.new".into(),
                        actor: caller.label.clone(),
                        role: Some(caller.role()),
                        summary: format!("fresh conversation in {chat}"),
                        ..NewActivity::default()
                    });
                    Outbound::Notice("Started a fresh conversation.".into())
                }
                Err(e) => Outbound::Notice(format!("Could not start a fresh conversation: {e}")),
            }),
            "export" => Some(self.export(chat).await),
            "backup" => Some(Outbound::Notice(match self.inner.backups.get() {
                _ if caller.kind != crate::domain::CallerKind::Owner => {
                    "Only an owner can take a backup.".to_string()
                }
                Some(run) => run()
                    .await
                    .unwrap_or_else(|e| format!("The backup failed: {e}")),
                None => "This process cannot take backups.".to_string(),
            })),
            "stop" => {
                let running = self.inner.queues.cancel(chat);
                (!running).then(|| Outbound::Notice("Nothing is running.".into()))
            }
            _ => match Ops::parse_command(&format!("/{command} {rest}")) {
                Some((spec, args)) => Some(Outbound::Notice(
                    match self.inner.ops.invoke(&inv, spec.name, args).await {
                        Ok(out) => out.text,
                        Err(e) => format!("{e}"),
                    },
                )),
                None => {
                    let known = SESSION_COMMANDS.iter().any(|c| c.name == command);
                    debug_assert!(!known, "session command /{command} is not handled");
                    Some(Outbound::Notice(format!(
                        "I don't know /{command}. Send /help for the commands."
                    )))
                }
            },
        }
    }
}
