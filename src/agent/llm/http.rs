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
            match self.attempt(&build, attempt).await {
                Ok(response) => {
                    return response
                        .json::<Value>()
                        .await
                        .map_err(|e| LlmError::Protocol(e.to_string()));
                }
                Err(Failed::ForGood(e)) => return Err(e),
                Err(Failed::Retry { why, wait }) => {
                    last = why;
                    self.pause(attempt, wait).await;
                }
            }
        }
        Err(self.unavailable(last))
    }

    /// One attempt: the response of a successful status, or why not and whether to try again
    /// (after how long).
    async fn attempt(
        &self,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
        attempt: u32,
    ) -> Result<reqwest::Response, Failed> {
        let mut wait = self.policy.backoff(attempt);
        match build(&self.inner).send().await {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => {
                let status = response.status();
                if let Some(after) = retry_after(&response) {
                    wait = after.min(self.policy.max_delay);
                }
                let message = error_message(response).await;
                if !retryable(status) {
                    return Err(Failed::ForGood(classify(status, message)));
                }
                tracing::warn!(%status, attempt, "LLM request failed, retrying: {message}");
                Err(Failed::Retry {
                    why: format!("HTTP {}: {message}", status.as_u16()),
                    wait,
                })
            }
            Err(e) => {
                let e = e.without_url();
                tracing::warn!(attempt, "LLM request failed, retrying: {e}");
                let why = if e.is_timeout() {
                    "the request timed out".to_string()
                } else {
                    e.to_string()
                };
                Err(Failed::Retry { why, wait })
            }
        }
    }

    /// Waits before the next attempt, if there is one.
    async fn pause(&self, attempt: u32, wait: Duration) {
        if attempt + 1 < self.policy.attempts {
            tokio::time::sleep(wait).await;
        }
    }

    fn unavailable(&self, last: String) -> LlmError {
        LlmError::Unavailable {
            attempts: self.policy.attempts,
            message: last,
        }
    }
}

/// Why one attempt did not succeed.
enum Failed {
    /// Not worth trying again (400, 401, 403).
    ForGood(LlmError),
    /// Worth another try, after `wait`.
    Retry { why: String, wait: Duration },
}

/// A streamed reply's reader: gets each server-sent event, says when the reply is complete.
pub trait EventReader {
    /// One event (`event:` name, if any, and its `data:`). `Ok(true)`: the reply is complete.
    /// An error the provider sent inside the stream is `Err`, and the request is tried again.
    fn event(&mut self, event: Option<&str>, data: &str) -> Result<bool, String>;
    /// Forgets a reply that broke off, before it is asked for again.
    fn reset(&mut self);
    /// Whether a stream that ends here (without its end marker) still holds a whole reply.
    fn whole_at_end(&self) -> bool {
        false
    }
}

impl Client {
    /// Sends a streaming request and hands its server-sent events to `reader` as they come.
    /// Failed statuses are retried as in [`Client::send_json`]; so is a stream that breaks off
    /// (or carries an error event) before the reply is complete, from the start.
    pub async fn send_events(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        reader: &mut (dyn EventReader + Send),
    ) -> Result<(), LlmError> {
        let mut last = String::new();
        for attempt in 0..self.policy.attempts {
            let wait = match self.attempt(&build, attempt).await {
                Ok(response) => match read_events(response, reader).await {
                    Ok(()) => return Ok(()),
                    Err(why) => {
                        tracing::warn!(attempt, "LLM stream broke off, retrying: {why}");
                        reader.reset();
                        last = format!("the reply broke off: {why}");
                        self.policy.backoff(attempt)
                    }
                },
                Err(Failed::ForGood(e)) => return Err(e),
                Err(Failed::Retry { why, wait }) => {
                    last = why;
                    wait
                }
            };
            self.pause(attempt, wait).await;
        }
        Err(self.unavailable(last))
    }
}

/// Reads server-sent events until the reader says the reply is complete. An error is why the
/// stream ended early.
async fn read_events(
    mut response: reqwest::Response,
    reader: &mut (dyn EventReader + Send),
) -> Result<(), String> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) if reader.whole_at_end() => return Ok(()),
            Ok(None) => return Err("the stream ended before the reply was complete".into()),
            Err(e) if e.is_timeout() => return Err("the request timed out".into()),
            Err(e) => return Err(e.without_url().to_string()),
        };
        buffer.extend_from_slice(&chunk);
        while let Some((end, skip)) = event_end(&buffer) {
            let block = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + skip);
            let (mut event, mut data) = (None, String::new());
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_string());
                } else if let Some(value) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if data.is_empty() && event.is_none() {
                continue;
            }
            if reader.event(event.as_deref(), &data)? {
                return Ok(());
            }
        }
    }
}

/// Where the first event in `buffer` ends (a blank line), and how long the separator is.
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
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
    fn events_end_at_blank_lines_of_either_kind() {
        assert_eq!(event_end(b"data: x\n\ndata: y"), Some((7, 2)));
        assert_eq!(event_end(b"data: x\r\n\r\n"), Some((7, 4)));
        assert_eq!(event_end(b"data: x\n"), None);
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
