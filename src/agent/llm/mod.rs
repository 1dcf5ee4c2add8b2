//! Model providers behind one small trait. The types here are the project's own; the wire
//! formats of OpenAI-compatible chat completions and Anthropic Messages stay inside
//! `openai.rs` and `anthropic.rs`, and HTTP retries inside `http.rs`.

mod anthropic;
mod http;
pub mod latency;
mod openai;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{LlmProviderKind, LlmSettings};
use crate::domain::ToolCall;

pub use http::RetryPolicy;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One message as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmMessage {
    User(String),
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        name: String,
        content: String,
        is_error: bool,
    },
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: Value,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub system: String,
    pub messages: Vec<LlmMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// Input tokens at the full price (cached ones are counted apart).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
}

/// What can go wrong talking to a model, worded for the person in the chat.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error(
        "no LLM is configured: set [llm] api_key in the config file (or OPERATOR__LLM__API_KEY)"
    )]
    NotConfigured,
    #[error("the LLM provider rejected the API key (HTTP {status}): {message}")]
    Auth { status: u16, message: String },
    #[error("the LLM provider rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the LLM provider is unavailable after {attempts} attempts: {message}")]
    Unavailable { attempts: u32, message: String },
    #[error("the LLM provider sent a reply that could not be read: {0}")]
    Protocol(String),
}

/// Told the reply's text so far, each time it grows while the model writes it.
pub type OnText<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A chat model.
pub trait LlmProvider: Send + Sync {
    /// A short label for status output, such as `openai gpt-4o-mini`.
    fn describe(&self) -> String;
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;
    /// Like [`LlmProvider::complete`], streamed: `on_text` sees the text as it grows. The
    /// response is the same as `complete` would give. A stream that breaks off is asked for
    /// again (`on_text` then starts over). Providers without streaming just complete.
    fn stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_text: OnText<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        let _ = on_text;
        self.complete(request)
    }
    /// A cheap request that proves the endpoint and key work (used by `operator check`).
    fn probe(&self) -> BoxFuture<'_, Result<String, LlmError>>;
}

/// Builds the configured provider, or `None` when no API key is set.
pub fn from_settings(settings: &LlmSettings) -> Result<Option<Arc<dyn LlmProvider>>, LlmError> {
    if settings.api_key.is_empty() {
        return Ok(None);
    }
    let client = http::Client::new(
        settings.api_key.clone(),
        Duration::from_secs(settings.timeout_secs),
        RetryPolicy::default(),
    )?;
    let base = settings.base_url.trim_end_matches('/').to_string();
    Ok(Some(match settings.provider {
        LlmProviderKind::Openai => {
            Arc::new(openai::OpenAi::new(client, base, settings.model.clone()))
        }
        LlmProviderKind::Anthropic => Arc::new(anthropic::Anthropic::new(
            client,
            base,
            settings.model.clone(),
        )),
    }))
}
