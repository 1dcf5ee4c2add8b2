//! The settings tree: built-in defaults < TOML file < `OPERATOR__SECTION__KEY` environment.
//!
//! The built-in defaults are the shipped `config/operator.toml`, so the documented file and the
//! behaviour without a file can never drift apart. This module only reads and validates; it never
//! opens the database or the network.

use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// The documented default configuration, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../config/operator.toml");

/// Where a configuration may come from when `--config` is not given.
const SEARCH_PATHS: [&str; 2] = ["config/operator.toml", "/etc/operator/operator.toml"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    Missing { path: PathBuf },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable configuration (OPERATOR__*): {message}")]
    Env { message: String },
    #[error("config {key}: {message}")]
    Invalid { key: String, message: String },
}

/// A credential read from configuration. It never prints itself.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that must send it (an HTTP header, a bot login).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub state: StateSettings,
    pub llm: LlmSettings,
    pub telegram: TelegramSettings,
    pub discord: DiscordSettings,
    pub docker: DockerSettings,
    pub admin: AdminSettings,
    pub operator: OperatorSettings,
    pub approvals: ApprovalSettings,
    pub scheduler: SchedulerSettings,
    pub backup: BackupSettings,
    pub speech: SpeechSettings,
    #[serde(default)]
    pub budget: BudgetSettings,
    #[serde(default)]
    pub mcp: McpSettings,
    pub log: LogSettings,
}

/// What happens to messages that arrive in a chat while its turn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    /// They join the running turn at its next model call.
    Steer,
    /// They wait, and all of them form the next turn together.
    Collect,
}

/// How a reply is shown while the model writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Streaming {
    /// Telegram's `sendMessageDraft` in private chats, else edits.
    Draft,
    /// One message edited in place as the text grows.
    Edit,
    Off,
}

/// Operations a model may call only with an owner's yes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSettings {
    pub require: Vec<String>,
    /// A call that targets more instances than this needs a yes too.
    pub max_targets: usize,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmProviderKind {
    Openai,
    Anthropic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub provider: LlmProviderKind,
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub max_tokens: u32,
    pub timeout_secs: u64,
    /// USD per million tokens by model name (`*` patterns allowed).
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, crate::usage::Price>,
    /// `provider/model` entries tried in order when a request fails with 429, 5xx or a timeout.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// More providers besides `[llm]` itself (which is the one named `default`).
    #[serde(default)]
    pub providers: Vec<ProviderSettings>,
}

/// One more model provider (`[[llm.providers]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub name: String,
    pub kind: LlmProviderKind,
    pub base_url: String,
    pub api_key: SecretString,
    /// Models it serves (the first is its default).
    #[serde(default)]
    pub models: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    Pairing,
    Allowlist,
    Open,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    Disabled,
    Open,
    Allowlist,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    pub enabled: bool,
    pub token: SecretString,
    pub api_url: String,
    pub owners: Vec<u64>,
    pub dm_policy: DmPolicy,
    pub group_policy: GroupPolicy,
    pub require_mention: bool,
    pub allow_users: Vec<u64>,
    pub allow_groups: Vec<i64>,
    pub mode: TelegramMode,
    pub webhook_url: String,
    pub webhook_secret: SecretString,
    pub messages_per_second: f64,
    pub chat_messages_per_second: f64,
    pub streaming: Streaming,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    Polling,
    Webhook,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    pub enabled: bool,
    pub token: SecretString,
    pub application_id: String,
    pub api_url: String,
    pub guild_ids: Vec<u64>,
    pub owners: Vec<u64>,
    pub dm_policy: DmPolicy,
    pub group_policy: GroupPolicy,
    pub require_mention: bool,
    pub allow_users: Vec<u64>,
    pub allow_guilds: Vec<u64>,
    pub allow_channels: Vec<u64>,
    pub messages_per_second: f64,
    pub chat_messages_per_second: f64,
    pub streaming: Streaming,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    pub host: String,
    pub image: String,
    pub network: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    /// Debian packages of the workstation image built from `image` (empty: none installed).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Shell lines run as root when the workstation image is built.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Several Docker engines (`[[docker.hosts]]`); empty: the one engine of `host`.
    #[serde(default)]
    pub hosts: Vec<DockerHostSettings>,
}

/// One Docker engine of the fleet.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DockerHostSettings {
    /// How instances and people refer to it: lowercase letters, digits and hyphens.
    pub name: String,
    /// `unix:///path/docker.sock`, `tcp://host:2376` (with the three TLS files below), or
    /// `ssh://user@host[:port]` (through the `ssh` client; the remote user runs `docker`).
    pub endpoint: String,
    /// Free-form labels to place by, such as `region = "eu"` or `gpu = "yes"`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// At most this many instances (unset: no limit).
    pub capacity_instances: Option<u32>,
    /// At most this much memory promised to its instances, in MiB (unset: no limit).
    pub capacity_memory_mb: Option<u64>,
    /// TLS client certificate files for `tcp://` (as `docker --tlsverify` uses them).
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// For `ssh://`: the private key, and a known_hosts file to check the host key against.
    pub ssh_key: Option<PathBuf>,
    pub ssh_known_hosts: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub listen: String,
    pub token: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSettings {
    pub max_steps: u32,
    /// Turns running at once across all chats; 0: eight per CPU core (at least eight).
    #[serde(default)]
    pub max_turns: u32,
    pub context_tokens: u32,
    pub queue: QueueMode,
}

/// What happens to automation runs that fell due while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedRuns {
    RunOnce,
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    pub missed: MissedRuns,
}

/// Spending limits; an absent key is no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

/// MCP servers every agent gets (`[[mcp.servers]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    #[serde(default)]
    pub servers: Vec<McpServerSettings>,
}

/// One MCP server: a Streamable HTTP `url` (with `headers`, whose values may name secrets as
/// `${secret:NAME}`), or a stdio `command` started inside each agent's instance.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerSettings {
    pub name: String,
    pub url: Option<String>,
    pub command: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Backups the daemon takes by itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Empty: no scheduled backups.
    pub dir: String,
    /// A 5-field cron expression, in UTC.
    pub every: String,
    pub keep: usize,
}

/// Voice notes in and out, through an OpenAI-compatible audio API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechSettings {
    /// Empty: voice notes are answered with "voice is not set up".
    pub base_url: String,
    pub api_key: SecretString,
    /// The transcription model (`POST {base_url}/audio/transcriptions`).
    pub model: String,
    pub reply: SpeechReply,
    /// The speech model and voice for spoken replies (`POST {base_url}/audio/speech`).
    pub speech_model: String,
    pub voice: String,
}

/// Whether a reply to a voice note is also spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeechReply {
    Off,
    VoiceToVoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Settings plus where they came from, for messages that must name the file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub source: Option<PathBuf>,
}

/// Picks the config file: `--config`, then `$OPERATOR_CONFIG`, then the first search path that
/// exists. `None` means built-in defaults only.
pub fn locate(explicit: Option<&Path>) -> Option<(PathBuf, bool)> {
    if let Some(path) = explicit {
        return Some((path.to_path_buf(), true));
    }
    if let Some(path) = std::env::var_os("OPERATOR_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(path), true));
    }
    SEARCH_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .map(|p| (p, false))
}

/// Loads defaults, the file (if any) and the environment, in that order of precedence.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let located = locate(explicit);
    let defaults = || File::from_str(DEFAULT_TOML, FileFormat::Toml);
    let mut builder = Config::builder().add_source(defaults());
    if let Some((path, _)) = &located {
        if !path.is_file() {
            return Err(ConfigError::Missing { path: path.clone() });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // The file is checked on its own first, so an unknown key or a wrong type is reported
        // against the file rather than against the merged tree.
        let file_only = Config::builder()
            .add_source(defaults())
            .add_source(File::from_str(&text, FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<Settings>())
            .map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
        drop(file_only);
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    let env = Environment::with_prefix("OPERATOR")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("telegram.owners")
        .with_list_parse_key("telegram.allow_users")
        .with_list_parse_key("telegram.allow_groups")
        .with_list_parse_key("discord.owners")
        .with_list_parse_key("discord.guild_ids")
        .with_list_parse_key("discord.allow_users")
        .with_list_parse_key("discord.allow_guilds")
        .with_list_parse_key("discord.allow_channels");
    let settings = builder
        .add_source(env)
        .build()
        .and_then(|c| c.try_deserialize::<Settings>())
        .map_err(|e| ConfigError::Env {
            message: e.to_string(),
        })?;
    // A value that parses but cannot be used is reported against the file it came from.
    settings.validate().map_err(|e| match (e, &located) {
        (ConfigError::Invalid { key, message }, Some((path, _))) => ConfigError::File {
            path: path.clone(),
            message: format!("{key}: {message}"),
        },
        (e, _) => e,
    })?;
    Ok(Loaded {
        settings,
        source: located.map(|(p, _)| p),
    })
}

impl Settings {
    /// Defaults only, as if no file and no environment existed.
    pub fn defaults() -> Self {
        Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .unwrap_or_else(|e| panic!("the built-in config/operator.toml is invalid: {e}"))
    }

    /// The state directory: `[state] dir`, else `$STATE_DIRECTORY` (systemd), else `data`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state.dir {
            return dir.clone();
        }
        match std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
            // systemd may pass several colon-separated directories; the first is ours.
            Some(dirs) => {
                let dirs = dirs.to_string_lossy().into_owned();
                PathBuf::from(dirs.split(':').next().unwrap_or("data"))
            }
            None => PathBuf::from("data"),
        }
    }
}

impl DockerHostSettings {
    /// A host with only a name and an endpoint; the rest unset.
    pub fn new(name: &str, endpoint: &str) -> Self {
        Self {
            name: name.into(),
            endpoint: endpoint.into(),
            labels: Default::default(),
            capacity_instances: None,
            capacity_memory_mb: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            ssh_key: None,
            ssh_known_hosts: None,
        }
    }
}

mod validate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_parse() {
        let s = Settings::defaults();
        assert_eq!(s.llm.provider, LlmProviderKind::Openai);
        assert_eq!(s.admin.listen, "127.0.0.1:8080");
        assert!(s.llm.api_key.is_empty());
        assert_eq!(s.operator.max_steps, 24);
    }

    #[test]
    fn secrets_never_print() {
        let s = SecretString::new("sk-very-secret");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        let mut settings = Settings::defaults();
        settings.llm.api_key = s;
        assert!(!format!("{settings:?}").contains("sk-very-secret"));
    }
}
