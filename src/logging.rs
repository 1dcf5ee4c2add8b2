//! Logging with tracing: human-readable by default, JSON lines when `[log] format = "json"`.
//! `OPERATOR_LOG` overrides `[log] level`. Logs go to stderr; stdout belongs to the console chat.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogSettings};

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
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    Ok(())
}
