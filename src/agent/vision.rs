//! Images in model requests: a model or provider that refuses them gets the text path (each
//! image replaced by a line naming it), the person is told once, and that model is not sent
//! images again while the process runs.

use std::collections::HashSet;
use std::sync::Mutex;

use super::Runner;
use super::llm::{ChatRequest, ChatResponse, LlmError, LlmMessage, LlmProvider, OnText};
use super::turn::Progress;

/// The models that refused an image, by name.
#[derive(Default)]
pub(super) struct Vision {
    refused: Mutex<HashSet<String>>,
}

impl Vision {
    fn refuses(&self, model: &str) -> bool {
        self.refused.lock().expect("vision lock").contains(model)
    }

    fn remember(&self, model: &str) {
        self.refused
            .lock()
            .expect("vision lock")
            .insert(model.to_string());
    }
}

fn has_images(messages: &[LlmMessage]) -> bool {
    messages.iter().any(|m| matches!(m, LlmMessage::Image(_)))
}

/// Replaces each image with a line that names it.
fn strip(messages: &mut [LlmMessage]) {
    for m in messages.iter_mut() {
        if let LlmMessage::Image(image) = m {
            *m = LlmMessage::User(format!(
                "[image {} is not shown: this model does not take images]",
                image.label
            ));
        }
    }
}

/// A refusal that can be about the images: the request itself was rejected (not the key, not
/// a limit), and the provider's words mention images.
fn refused_images(e: &LlmError) -> bool {
    match e {
        LlmError::Rejected { status, message } => {
            let message = message.to_ascii_lowercase();
            !matches!(status, 401 | 403 | 429)
                && ["image", "vision", "multimodal"]
                    .iter()
                    .any(|w| message.contains(w))
        }
        _ => false,
    }
}

impl Runner {
    /// Asks the model, streamed. A request with images that the model refuses because of them
    /// is asked again as text, and the chat hears why once.
    pub(super) async fn ask_model(
        &self,
        llm: &dyn LlmProvider,
        mut request: ChatRequest,
        on_text: OnText<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        let vision = &self.inner.vision;
        if has_images(&request.messages) && vision.refuses(&request.model) {
            strip(&mut request.messages);
        }
        match llm.stream(&request, on_text).await {
            Err(e) if has_images(&request.messages) && refused_images(&e) => {
                tracing::warn!(model = %request.model, error = %e, "the model refused images; asking again as text");
                vision.remember(&request.model);
                strip(&mut request.messages);
                progress(Progress::Status {
                    key: "images".into(),
                    text: format!(
                        "The model {} does not take images, so it was given the file names only.",
                        request.model
                    ),
                });
                llm.stream(&request, on_text).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_refusal_that_names_images_counts() {
        let rejected = |status, message: &str| LlmError::Rejected {
            status,
            message: message.into(),
        };
        assert!(refused_images(&rejected(
            400,
            "image_url is only supported by certain models"
        )));
        assert!(!refused_images(&rejected(400, "max_tokens is too large")));
        assert!(!refused_images(&rejected(429, "image rate limit")));
    }
}
