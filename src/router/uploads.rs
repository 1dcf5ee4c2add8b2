//! Files that came with a message: handed to the agent's instance through the control surface
//! (`file_upload`), and described to the agent in a line of the message it reads.

use base64::Engine;
use serde_json::json;

use super::Router;
use crate::channel::Attachment;
use crate::domain::{Caller, ChatRef, ImagePart, OPERATOR};
use crate::ops::Invocation;

impl Router {
    /// Saves each attachment into `agent`'s instance and returns one line per file for the
    /// agent to read, and the images among them ready for the model (Operator, which keeps no
    /// files, still sees them). The channel's local copies are removed either way.
    pub(super) async fn take_uploads(
        &self,
        chat: &ChatRef,
        caller: &Caller,
        agent: &str,
        attachments: Vec<Attachment>,
    ) -> (Vec<String>, Vec<ImagePart>) {
        let mut notes = Vec::new();
        let mut images = Vec::new();
        for a in attachments {
            let bytes = match (&a.local, &a.problem) {
                (_, Some(problem)) => Err(format!("[file {} was not received: {problem}]", a.name)),
                (None, None) => Err(format!("[file {} was not received]", a.name)),
                (Some(path), None) => tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("[file {} could not be read: {e}]", a.name)),
            };
            if let Some(path) = &a.local {
                let _ = tokio::fs::remove_file(path).await;
            }
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(note) => {
                    notes.push(note);
                    continue;
                }
            };
            let image = crate::media::is_image_name(&a.name);
            if image {
                match crate::media::prepare_async(bytes.clone(), a.name.clone()).await {
                    Ok(part) => images.push(part),
                    Err(e) => notes.push(format!("[the image could not be shown to you: {e}]")),
                }
            }
            notes.push(if agent == OPERATOR && image {
                format!("[image {} received; Operator has no workspace, so it is not kept]", a.name)
            } else if agent == OPERATOR {
                format!(
                    "[file {} arrived, but Operator has no workspace to keep it; bind this chat to an agent (/use NAME) and send it again]",
                    a.name
                )
            } else {
                self.upload(chat, caller, agent, &a.name, &bytes).await
            });
        }
        (notes, images)
    }

    /// The text of voice notes, shown back to the chat so the person sees what was heard.
    /// Without `[speech]`, or when a note cannot be transcribed, an error for the person.
    pub(super) async fn transcribe(
        &self,
        chat: &ChatRef,
        voices: Vec<Attachment>,
    ) -> Result<String, String> {
        let speech = self.inner.speech.get().cloned();
        let mut heard = Vec::new();
        for v in voices {
            let bytes = match (&v.local, &v.problem) {
                (_, Some(problem)) => Err(format!("The voice note was not received: {problem}")),
                (None, None) => Err("The voice note was not received.".to_string()),
                (Some(path), None) => tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("The voice note could not be read: {e}")),
            };
            if let Some(path) = &v.local {
                let _ = tokio::fs::remove_file(path).await;
            }
            let Some(speech) = &speech else {
                return Err(crate::media::speech::NOT_SET_UP.to_string());
            };
            let text = speech
                .transcribe(bytes?, &v.name)
                .await
                .map_err(|e| format!("The voice note could not be transcribed: {e}"))?;
            heard.push(text);
        }
        let heard = heard.join("\n").trim().to_string();
        if heard.is_empty() {
            return Err("I heard nothing in the voice note.".into());
        }
        let shown = crate::channel::Outbound::Status {
            key: "heard".into(),
            text: format!("🎙 “{heard}”"),
        };
        self.inner.hub.answer(chat, &[], Some(shown)).await;
        Ok(heard)
    }

    async fn upload(
        &self,
        chat: &ChatRef,
        caller: &Caller,
        agent: &str,
        name: &str,
        bytes: &[u8],
    ) -> String {
        let mut inv = Invocation::new(caller.clone());
        inv.chat = Some(chat.clone());
        let args = json!({
            "agent": agent,
            "name": name,
            "content_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
        });
        match self.inner.ops.invoke(&inv, "file_upload", args).await {
            Ok(out) => format!(
                "[file uploaded: {} ({} bytes)]",
                out.data["path"].as_str().unwrap_or(name),
                bytes.len()
            ),
            Err(e) => format!("[file {name} could not be saved: {e}]"),
        }
    }
}
