//! `/export`: the chat's current conversation sent back as a Markdown file.

use super::Router;
use crate::backup::export::{Format, render};
use crate::channel::Outbound;
use crate::domain::ChatRef;

impl Router {
    /// The conversation this chat is having with its agent, as a Markdown file.
    pub(super) async fn export(&self, chat: &ChatRef) -> Outbound {
        let store = &self.inner.store;
        let exported = async {
            let agent = self.bound_agent(chat).await?;
            let conversation = store
                .open_conversation(chat, &agent)
                .await
                .map_err(|e| e.to_string())?;
            let messages = store
                .messages_after(conversation.id, 0)
                .await
                .map_err(|e| e.to_string())?;
            let text = render(&conversation, &messages, Format::Markdown);
            Ok::<_, String>((Format::Markdown.file_name(&conversation), text))
        }
        .await;
        match exported {
            Ok((name, text)) => Outbound::File {
                name,
                bytes: text.into_bytes(),
            },
            Err(e) => Outbound::Notice(format!("Could not export this conversation: {e}")),
        }
    }
}
