//! Logging with tracing: human-readable by default, JSON lines when `[log] format = "json"`.
//! `OPERATOR_LOG` overrides `[log] level`. Logs go to stderr; stdout belongs to the console chat.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogSettings};
use crate::secrets::Redactor;

/// Stderr with every secret value replaced. The formatter writes one event per call, so a
/// value is never split across two writes.
#[derive(Clone, Copy)]
struct RedactedStderr;

impl std::io::Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(Redactor::global().redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Installs the global subscriber. `quiet` lowers the default to warnings (for `operator chat`,
/// whose terminal is the conversation).
pub fn init(settings: &LogSettings, quiet: bool) -> anyhow::Result<()> {
    let level = match std::env::var("OPERATOR_LOG") {
        Ok(level) if !level.trim().is_empty() => level,
        _ if quiet => "warn".to_string(),
        _ => settings.level.clone(),
    };
    let filter = Targets::from_str(&level)
        .map_err(|e| anyhow::anyhow!("config log.level {level:?} is not a valid filter: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match settings.format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(RedactedStderr)
                    .with_ansi(ansi),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(RedactedStderr),
            )
            .try_init()?,
    }
    Ok(())
}
