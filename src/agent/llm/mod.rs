//! Model providers behind one small trait. The types here are the project's own; the wire
//! formats of OpenAI-compatible chat completions and Anthropic Messages stay inside
//! `openai.rs` and `anthropic.rs`, and HTTP retries inside `http.rs`.

mod anthropic;
mod failover;
mod http;
pub mod latency;
mod openai;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{LlmProviderKind, LlmSettings};
use crate::domain::{ImagePart, ToolCall};

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
    /// An image shown to the model, as part of the user's side of the exchange: it belongs to
    /// the user message or the tool results right before it.
    Image(ImagePart),
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
    /// Shared: most turns offer the same list (see `agent::toolset`).
    pub tools: std::sync::Arc<[ToolSpec]>,
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
    /// The provider and model that answered, when several are configured (else empty).
    pub provider: String,
    pub model: String,
    /// Set when the answer came from a fallback: what failed before it.
    pub fell_back: Option<String>,
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

/// Builds the configured provider, or `None` when no API key is set: `[llm]` alone, or, with
/// `[[llm.providers]]` or `[llm] fallbacks`, all of them behind one that fails over.
pub fn from_settings(settings: &LlmSettings) -> Result<Option<Arc<dyn LlmProvider>>, LlmError> {
    let several = !settings.providers.is_empty() || !settings.fallbacks.is_empty();
    // With somewhere else to go, a failing provider is tried once more, not four times.
    let policy = if several {
        RetryPolicy {
            attempts: 2,
            ..RetryPolicy::default()
        }
    } else {
        RetryPolicy::default()
    };
    let timeout = Duration::from_secs(settings.timeout_secs);
    let build =
        |kind: LlmProviderKind, base: &str, key: &crate::config::SecretString, model: &str| {
            let client = http::Client::new(key.clone(), timeout, policy)?;
            let base = base.trim_end_matches('/').to_string();
            Ok::<Arc<dyn LlmProvider>, LlmError>(match kind {
                LlmProviderKind::Openai => {
                    Arc::new(openai::OpenAi::new(client, base, model.to_string()))
                }
                LlmProviderKind::Anthropic => {
                    Arc::new(anthropic::Anthropic::new(client, base, model.to_string()))
                }
            })
        };
    let mut providers = Vec::new();
    if !settings.api_key.is_empty() {
        providers.push((
            "default".to_string(),
            build(
                settings.provider,
                &settings.base_url,
                &settings.api_key,
                &settings.model,
            )?,
        ));
    }
    if !several {
        return Ok(providers.pop().map(|(_, p)| p));
    }
    for p in &settings.providers {
        let model = p
            .models
            .first()
            .map_or(settings.model.as_str(), String::as_str);
        providers.push((
            p.name.clone(),
            build(p.kind, &p.base_url, &p.api_key, model)?,
        ));
    }
    if providers.is_empty() {
        return Ok(None);
    }
    let fallbacks = settings
        .fallbacks
        .iter()
        .map(|f| match f.split_once('/') {
            Some((provider, model)) => (provider.to_string(), model.to_string()),
            None => ("default".to_string(), f.clone()),
        })
        .collect();
    Ok(Some(Arc::new(failover::Failover::new(
        providers, fallbacks,
    ))))
}
