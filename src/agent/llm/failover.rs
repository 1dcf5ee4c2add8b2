//! Several providers behind one: `[llm]` is the provider named `default`, `[[llm.providers]]`
//! add more, and a model may be named `provider/model`. A request that fails with 429, 5xx, a
//! timeout or a refused connection moves to the next entry of `[llm] fallbacks`; a provider that
//! failed three times in a row is skipped for a minute. The request is the project's own type,
//! so each provider renders the conversation in its own wire format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BoxFuture, ChatRequest, ChatResponse, LlmError, LlmProvider, OnText};

/// Failures in a row that open a provider's breaker, and how long it stays open.
const BREAK_AFTER: u32 = 3;
const BREAK_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Health {
    failures: u32,
    open_until: Option<Instant>,
}

pub struct Failover {
    providers: HashMap<String, Arc<dyn LlmProvider>>,
    /// Order of `[llm.providers]`, for descriptions and probes.
    names: Vec<String>,
    /// `(provider, model)` tried after the request's own.
    fallbacks: Vec<(String, String)>,
    health: Mutex<HashMap<String, Health>>,
}

impl Failover {
    pub fn new(
        providers: Vec<(String, Arc<dyn LlmProvider>)>,
        fallbacks: Vec<(String, String)>,
    ) -> Self {
        let names = providers.iter().map(|(n, _)| n.clone()).collect();
        Self {
            providers: providers.into_iter().collect(),
            names,
            fallbacks,
            health: Mutex::new(HashMap::new()),
        }
    }

    /// The provider and model a model name means: `provider/model` when the provider exists,
    /// else the default provider with the whole name.
    fn resolve(&self, model: &str) -> (String, String) {
        if let Some((provider, rest)) = model.split_once('/')
            && self.providers.contains_key(provider)
        {
            return (provider.to_string(), rest.to_string());
        }
        ("default".to_string(), model.to_string())
    }

    /// The entries to try for a request, the breaker-open ones last (better late than none).
    fn chain(&self, model: &str) -> Vec<(String, String)> {
        let mut chain = vec![self.resolve(model)];
        for entry in &self.fallbacks {
            if !chain.contains(entry) {
                chain.push(entry.clone());
            }
        }
        let now = Instant::now();
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let open = |name: &str| {
            health
                .get(name)
                .and_then(|h| h.open_until)
                .is_some_and(|until| until > now)
        };
        let (closed, open): (Vec<_>, Vec<_>) =
            chain.into_iter().partition(|(provider, _)| !open(provider));
        closed.into_iter().chain(open).collect()
    }

    fn succeeded(&self, provider: &str) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.insert(provider.to_string(), Health::default());
    }

    fn failed(&self, provider: &str) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let h = health.entry(provider.to_string()).or_default();
        h.failures += 1;
        if h.failures >= BREAK_AFTER {
            h.open_until = Some(Instant::now() + BREAK_FOR);
            tracing::warn!(
                provider,
                "{BREAK_AFTER} failures in a row; skipped for {BREAK_FOR:?}"
            );
        }
    }

    /// Tries each entry until one answers; `stream` says whether to stream.
    async fn run(
        &self,
        request: &ChatRequest,
        on_text: Option<OnText<'_>>,
    ) -> Result<ChatResponse, LlmError> {
        let mut last = None;
        let mut tried: Vec<String> = Vec::new();
        let primary = self.resolve(&request.model);
        for (provider, model) in self.chain(&request.model) {
            let Some(backend) = self.providers.get(&provider) else {
                continue;
            };
            let mut attempt = request.clone();
            attempt.model = model.clone();
            let result = match on_text {
                Some(on_text) => backend.stream(&attempt, on_text).await,
                None => backend.complete(&attempt).await,
            };
            match result {
                Ok(mut response) => {
                    self.succeeded(&provider);
                    response.provider = provider.clone();
                    response.model = model;
                    if !tried.is_empty() {
                        response.fell_back = Some(tried.join("; "));
                    } else if provider != primary.0 {
                        response.fell_back = Some(format!(
                            "{}/{} skipped: it failed {BREAK_AFTER} times in a row",
                            primary.0, primary.1
                        ));
                    }
                    return Ok(response);
                }
                // Worth another provider: overloaded, down, timed out, refused.
                Err(e @ LlmError::Unavailable { .. }) => {
                    self.failed(&provider);
                    tried.push(format!("{provider}/{model}: {e}"));
                    last = Some(e);
                }
                Err(LlmError::Rejected {
                    status: 429,
                    message,
                }) => {
                    self.failed(&provider);
                    let e = LlmError::Rejected {
                        status: 429,
                        message,
                    };
                    tried.push(format!("{provider}/{model}: {e}"));
                    last = Some(e);
                }
                // The request itself is wrong (or the key): another provider would not help.
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(LlmError::NotConfigured))
    }
}

impl LlmProvider for Failover {
    fn describe(&self) -> String {
        let mut text = self
            .names
            .iter()
            .filter_map(|n| {
                self.providers
                    .get(n)
                    .map(|p| format!("{n}: {}", p.describe()))
            })
            .collect::<Vec<_>>()
            .join("; ");
        if !self.fallbacks.is_empty() {
            let chain: Vec<String> = self
                .fallbacks
                .iter()
                .map(|(p, m)| format!("{p}/{m}"))
                .collect();
            text.push_str(&format!("; fallbacks {}", chain.join(", ")));
        }
        text
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(self.run(request, None))
    }

    fn stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_text: OnText<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(self.run(request, Some(on_text)))
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, LlmError>> {
        Box::pin(async move {
            let mut lines = Vec::new();
            let mut failed = None;
            for name in &self.names {
                let Some(provider) = self.providers.get(name) else {
                    continue;
                };
                match provider.probe().await {
                    Ok(detail) => lines.push(format!("{name}: {detail}")),
                    Err(e) => {
                        lines.push(format!("{name}: {e}"));
                        failed.get_or_insert(e);
                    }
                }
            }
            match failed {
                // One provider that does not answer is an error for `check`, with every line.
                Some(LlmError::Auth { status, .. }) => Err(LlmError::Auth {
                    status,
                    message: lines.join("; "),
                }),
                Some(_) => Err(LlmError::Unavailable {
                    attempts: 1,
                    message: lines.join("; "),
                }),
                None => Ok(lines.join("; ")),
            }
        })
    }
}
