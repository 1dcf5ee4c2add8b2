//! The HTTP client both providers share: timeouts, and retries with backoff on 429, 5xx and
//! transport errors, honouring `retry-after`. 400, 401 and 403 are never retried.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use super::LlmError;
use crate::config::SecretString;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(400),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(10));
        // Up to a quarter of jitter so many clients do not retry in lockstep.
        let jitter = exp.mul_f64(rand::random::<f64>() * 0.25);
        (exp + jitter).min(self.max_delay)
    }
}

#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    pub key: SecretString,
    policy: RetryPolicy,
}

impl Client {
    pub fn new(
        key: SecretString,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, LlmError> {
        let inner = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { inner, key, policy })
    }

    /// Sends the request built by `build` until it succeeds, fails for good, or the attempts
    /// run out; returns the parsed JSON body of the success.
    pub async fn send_json(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Value, LlmError> {
        let mut last = String::new();
        for attempt in 0..self.policy.attempts {
            let mut delay = self.policy.backoff(attempt);
            match build(&self.inner).send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return response
                            .json::<Value>()
                            .await
                            .map_err(|e| LlmError::Protocol(e.to_string()));
                    }
                    if let Some(after) = retry_after(&response) {
                        delay = after.min(self.policy.max_delay);
                    }
                    let message = error_message(response).await;
                    if !retryable(status) {
                        return Err(classify(status, message));
                    }
                    tracing::warn!(%status, attempt, "LLM request failed, retrying: {message}");
                    last = format!("HTTP {}: {message}", status.as_u16());
                }
                Err(e) => {
                    let e = e.without_url();
                    tracing::warn!(attempt, "LLM request failed, retrying: {e}");
                    last = if e.is_timeout() {
                        "the request timed out".to_string()
                    } else {
                        e.to_string()
                    };
                }
            }
            if attempt + 1 < self.policy.attempts {
                tokio::time::sleep(delay).await;
            }
        }
        Err(LlmError::Unavailable {
            attempts: self.policy.attempts,
            message: last,
        })
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
        // Anthropic's "overloaded".
        || status.as_u16() == 529
}

fn classify(status: StatusCode, message: String) -> LlmError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => LlmError::Auth {
            status: status.as_u16(),
            message,
        },
        _ => LlmError::Rejected {
            status: status.as_u16(),
            message,
        },
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The provider's own error text (both vendors use `{"error": {"message": ...}}`), shortened.
async fn error_message(response: reqwest::Response) -> String {
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or(body);
    let message = message.trim();
    if message.is_empty() {
        return "no details given".to_string();
    }
    message.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.backoff(0) >= Duration::from_millis(400));
        assert!(p.backoff(1) >= Duration::from_millis(800));
        assert!(p.backoff(20) <= p.max_delay);
    }

    #[test]
    fn only_transient_statuses_retry() {
        for s in [429, 500, 502, 503, 529] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
