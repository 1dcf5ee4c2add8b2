//! The control surface: the one registry of typed operations. Each operation has a name, a
//! description, a JSON schema for its arguments, an authorization rule and an optional chat
//! command form; every invocation is authorized and written to the activity feed here.
//!
//! Operations are reached three ways (LLM tool, chat command, HTTP), and this module knows none
//! of them: no channel, no HTTP, no agent loop.

mod agents;
mod approvals;
mod ask;
mod automations;
mod bots;
mod chat_files;
mod evolve;
mod hosts;
mod instance_admin;
mod instance_tools;
mod instances;
mod jobs;
mod mcp;
pub mod mentions;
mod pairing;
mod progress;
mod registry;
mod secrets;
mod skills;
mod system;
mod throwaway;
mod turns;
mod usage;
pub mod webhooks;

use progress::PROGRESS;
pub use progress::ProgressSink;
pub(crate) use progress::report_progress;
pub use turns::TurnRunner;
mod workspace;

use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use crate::domain::split_command;
use crate::domain::{ActorRole, Caller, CallerKind, ChatRef, OPERATOR};
use crate::instance::{Fleet, InstanceBackend, InstanceDefaults};
use crate::secrets::{MasterKey, Redactor};
use crate::store::{InstanceRecord, NewActivity, Store, StoreError};
pub use approvals::ApprovalPolicy;
pub use ask::ASK_CHANNEL;
use tokio::sync::Notify;

pub use bots::BotConnector;
pub use hosts::{Reconciled, loads as host_loads};
pub use jobs::JobEvents;
pub use mcp::AgentMcpTools;
pub use registry::SPECS;

/// Who may run an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any admitted user.
    Member,
    /// Owners only.
    Owner,
    /// An agent acting in its own instance (its workspace tools); never offered to Operator.
    Workspace,
}

/// The description of one operation.
pub struct OpSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub access: Access,
    /// The chat command that runs it (without the slash), if any.
    pub command: Option<&'static str>,
    /// Chat form: the argument names that words after the command fill, in order; the last one
    /// takes the rest of the line.
    pub positional: &'static [&'static str],
    pub schema: fn() -> Value,
}

impl OpSpec {
    /// The JSON schema of the arguments as every face shows it: the operation's own schema,
    /// saying that no other field is accepted, which is exactly what [`Ops::invoke`] checks.
    pub fn arguments_schema(&self) -> Value {
        let mut schema = (self.schema)();
        if let Some(map) = schema.as_object_mut() {
            map.entry("additionalProperties")
                .or_insert(Value::Bool(false));
        }
        schema
    }

    /// Refuses arguments with a field the schema does not name, saying which field and which
    /// ones are accepted, so a model can correct its call.
    fn check_fields(&self, args: &Value) -> Result<(), OpError> {
        let Some(given) = args.as_object() else {
            return Ok(());
        };
        let schema = (self.schema)();
        let accepted: Vec<&str> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let unknown: Vec<&str> = given
            .keys()
            .map(String::as_str)
            .filter(|k| !accepted.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let fields = if unknown.len() == 1 {
            "field"
        } else {
            "fields"
        };
        let unknown = unknown
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let takes = if accepted.is_empty() {
            "it takes no arguments".to_string()
        } else {
            format!("it takes only: {}", accepted.join(", "))
        };
        Err(OpError::InvalidArgs {
            op: self.name,
            message: format!("unknown {fields} {unknown}; {takes}"),
        })
    }

    /// An operation without a chat-command form (a tool for the model, and an HTTP route).
    pub const fn tool(
        name: &'static str,
        description: &'static str,
        access: Access,
        schema: fn() -> Value,
    ) -> Self {
        Self {
            name,
            description,
            access,
            command: None,
            positional: &[],
            schema,
        }
    }
}

/// The arguments of the many operations that act on one thing by name.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameArgs {
    pub(crate) name: String,
}

/// The schema of [`NameArgs`].
pub(crate) fn name_schema() -> Value {
    json!({ "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] })
}

/// The context an operation runs in.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub caller: Caller,
    /// The chat the request came from, if it came from one.
    pub chat: Option<ChatRef>,
    pub conversation_id: Option<i64>,
    /// The agent whose turn made the call (`operator` for the manager), for the activity feed.
    pub via_agent: Option<String>,
    /// Where long steps (an image pull) report how far they are.
    pub progress: Option<ProgressSink>,
}

impl Invocation {
    pub fn new(caller: Caller) -> Self {
        Self {
            caller,
            chat: None,
            conversation_id: None,
            via_agent: None,
            progress: None,
        }
    }
}

/// What an operation returns: a few lines for people and structured data for machines.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub data: Value,
    /// Images for the model (`read_file` of an image): a turn shows them with the result.
    pub images: Vec<crate::domain::ImagePart>,
}

impl Output {
    pub fn new(text: impl Into<String>, data: Value) -> Self {
        Self {
            text: text.into(),
            data,
            images: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    #[error("there is no operation called {0:?}")]
    Unknown(String),
    #[error("{op} is not allowed here: it is for owners, or for an agent in its own instance")]
    Forbidden { op: &'static str },
    #[error("invalid arguments for {op}: {message}")]
    InvalidArgs { op: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
    /// Not run, and why (an owner's decision, a timeout, a caller who may not decide).
    #[error("{0}")]
    Refused(String),
}

impl OpError {
    /// The same error with any secret value in its text replaced.
    fn redacted(self, redactor: &Redactor) -> Self {
        let clean = |s: String| redactor.redact(&s).into_owned();
        match self {
            OpError::InvalidArgs { op, message } => OpError::InvalidArgs {
                op,
                message: clean(message),
            },
            OpError::NotFound(m) => OpError::NotFound(clean(m)),
            OpError::Conflict(m) => OpError::Conflict(clean(m)),
            OpError::Failed(m) => OpError::Failed(clean(m)),
            OpError::Refused(m) => OpError::Refused(clean(m)),
            other => other,
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => OpError::NotFound(format!("{what} not found")),
            StoreError::Conflict(what) => OpError::Conflict(what),
            other => OpError::Failed(other.to_string()),
        }
    }
}

/// Facts about the running daemon that the status operation reports.
#[derive(Debug, Clone)]
pub struct SystemInfo {
    pub started: Instant,
    /// The configured model, or `None` when no LLM is configured.
    pub llm: Option<String>,
    /// Channels this process serves, such as `console`.
    pub channels: Vec<String>,
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    info: SystemInfo,
    /// The fleet, as the backend every instance call goes through.
    instances: Arc<dyn InstanceBackend>,
    fleet: Arc<Fleet>,
    instance_defaults: InstanceDefaults,
    master_key: Arc<MasterKey>,
    /// Nudges the scheduler when automations change.
    scheduler_wake: Arc<Notify>,
    /// Runs a turn for operations that need one (skill_test); set once the router exists.
    turns: std::sync::OnceLock<Arc<dyn TurnRunner>>,
    /// Starts and stops chat bots; set by the daemon.
    bots: std::sync::OnceLock<Arc<dyn BotConnector>>,
    /// What a model's call needs an owner's yes for.
    approval_policy: ApprovalPolicy,
    /// Turns waiting for an owner's decision.
    waiting: approvals::Waiting,
    /// Each instance's files by name, for `@file` mentions.
    mentions: mentions::MentionIndex,
    /// Prices and spending limits; set by the app.
    meter: std::sync::OnceLock<Arc<crate::usage::Meter>>,
    mcp: mcp::Mcp,
}

/// Operations the model is never offered: they take secret values, which come from people.
/// Nor are decisions on approvals: those are a person's.
const NOT_FOR_MODELS: [&str; 5] = [
    "secret_create",
    "secret_rotate",
    "file_upload",
    "approve",
    "deny",
];
/// Arguments never written to the activity feed.
const SENSITIVE_ARGS: [&str; 2] = ["value", "content_base64"];

impl Ops {
    pub fn new(
        store: Store,
        info: SystemInfo,
        fleet: Arc<Fleet>,
        instance_defaults: InstanceDefaults,
        master_key: Arc<MasterKey>,
        scheduler_wake: Arc<Notify>,
    ) -> Self {
        Self::with_approvals(
            store,
            info,
            fleet,
            instance_defaults,
            master_key,
            scheduler_wake,
            ApprovalPolicy::default(),
        )
    }

    /// [`Ops::new`] with an approval policy other than the documented default.
    pub fn with_approvals(
        store: Store,
        info: SystemInfo,
        fleet: Arc<Fleet>,
        instance_defaults: InstanceDefaults,
        master_key: Arc<MasterKey>,
        scheduler_wake: Arc<Notify>,
        approval_policy: ApprovalPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                info,
                instances: fleet.clone(),
                fleet,
                instance_defaults,
                master_key,
                scheduler_wake,
                turns: std::sync::OnceLock::new(),
                bots: std::sync::OnceLock::new(),
                approval_policy,
                waiting: approvals::Waiting::default(),
                mentions: mentions::MentionIndex::default(),
                meter: std::sync::OnceLock::new(),
                mcp: mcp::Mcp::default(),
            }),
        }
    }

    /// Gives operations a way to start and stop bots (called once by the daemon).
    pub fn set_bot_connector(&self, connector: Arc<dyn BotConnector>) {
        let _ = self.inner.bots.set(connector);
    }

    /// Gives operations a way to run turns (called once by the app).
    pub fn set_meter(&self, meter: Arc<crate::usage::Meter>) {
        let _ = self.inner.meter.set(meter);
    }

    pub fn set_turn_runner(&self, runner: Arc<dyn TurnRunner>) {
        let _ = self.inner.turns.set(runner);
    }

    pub(crate) fn turn_runner(&self) -> Result<Arc<dyn TurnRunner>, OpError> {
        self.inner
            .turns
            .get()
            .cloned()
            .ok_or_else(|| OpError::Failed("this process cannot run turns".into()))
    }

    /// Stores a skill version read from disk (`operator skills import`).
    pub async fn import_skill(
        &self,
        name: &str,
        skill_md: String,
        files: std::collections::BTreeMap<String, String>,
        author: &str,
    ) -> Result<(crate::store::SkillVersion, bool), OpError> {
        skills::store_version(self, "skill_import", name, skill_md, files, author).await
    }

    /// Tells the scheduler that automations changed, so it looks again at once.
    pub fn wake_scheduler(&self) {
        self.inner.scheduler_wake.notify_one();
    }

    /// The master key, shared (channels seal what they store with it).
    pub fn master_key_arc(&self) -> Arc<MasterKey> {
        self.inner.master_key.clone()
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.inner.master_key
    }

    /// Environment variables (the secrets it receives) for one command in an instance.
    pub async fn secret_env(
        &self,
        instance: &InstanceRecord,
    ) -> Result<Vec<(String, String)>, OpError> {
        secrets::env_for(self, instance).await
    }

    pub fn instances(&self) -> &Arc<dyn InstanceBackend> {
        &self.inner.instances
    }

    /// The Docker hosts, for placement and per-host calls.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.inner.fleet
    }

    /// Tells the fleet where each stored instance lives; instances stored before several hosts
    /// existed are given the first host. Called once at start.
    pub async fn load_placements(&self) -> Result<(), OpError> {
        let fleet = self.fleet();
        self.store()
            .adopt_hostless_instances(fleet.first_host())
            .await?;
        for r in self.store().list_instances().await? {
            fleet.place(&r.name, &r.host);
        }
        Ok(())
    }

    pub fn instance_defaults(&self) -> &InstanceDefaults {
        &self.inner.instance_defaults
    }

    /// Follows every running background job once (see `jobs.rs`).
    pub async fn poll_jobs(&self, events: &dyn JobEvents) -> Result<(), OpError> {
        jobs::poll(self, events).await
    }

    /// Running background jobs and the last failure, in a few lines.
    pub async fn jobs_summary(&self) -> Result<String, OpError> {
        jobs::summary(self).await
    }

    /// Brings stored instance statuses in line with the engine (see [`Reconciled`]).
    pub async fn reconcile_instances(&self) -> Result<Reconciled, OpError> {
        hosts::reconcile(self).await
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn info(&self) -> &SystemInfo {
        &self.inner.info
    }

    pub fn spec(name: &str) -> Option<&'static OpSpec> {
        SPECS.iter().find(|s| s.name == name)
    }

    /// The operations this caller may run: what Operator is offered as tools.
    pub fn available_to(caller: &Caller) -> impl Iterator<Item = &'static OpSpec> + '_ {
        SPECS.iter().filter(move |s| {
            s.access != Access::Workspace
                && !NOT_FOR_MODELS.contains(&s.name)
                && allowed(s, &Invocation::new(caller.clone()))
        })
    }

    /// The workspace tools an agent with an instance is offered.
    pub fn workspace_tools() -> impl Iterator<Item = &'static OpSpec> {
        SPECS.iter().filter(|s| s.access == Access::Workspace)
    }

    /// Parses a chat command such as `/use daniel` into an operation and its arguments.
    /// Returns `None` when the text is not a command of any operation.
    pub fn parse_command(text: &str) -> Option<(&'static OpSpec, Value)> {
        let (command, rest) = split_command(text)?;
        let spec = SPECS.iter().find(|s| s.command == Some(command))?;
        let mut args = serde_json::Map::new();
        let mut rest = rest.trim();
        for (i, name) in spec.positional.iter().enumerate() {
            if rest.is_empty() {
                break;
            }
            let value = if i + 1 == spec.positional.len() {
                std::mem::take(&mut rest)
            } else {
                let (word, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                rest = tail.trim_start();
                word
            };
            args.insert((*name).to_string(), json!(value));
        }
        Some((spec, Value::Object(args)))
    }

    /// Authorizes, runs and records one operation.
    pub async fn invoke(
        &self,
        inv: &Invocation,
        name: &str,
        args: Value,
    ) -> Result<Output, OpError> {
        let result = match Self::spec(name) {
            None => Err(OpError::Unknown(name.to_string())),
            Some(spec) if !allowed(spec, inv) => Err(OpError::Forbidden { op: spec.name }),
            Some(spec) if let Err(e) = spec.check_fields(&args) => Err(e),
            Some(spec) => self.approved_dispatch(spec, inv, &args).await,
        };
        // Nothing an operation returns carries a secret value out, whoever called it.
        let redactor = Redactor::global();
        let result = match result {
            Ok(mut out) => {
                out.text = redactor.redact(&out.text).into_owned();
                redactor.redact_json(&mut out.data);
                Ok(out)
            }
            Err(e) => Err(e.redacted(redactor)),
        };
        let (summary, ok) = match &result {
            Ok(out) => (format!("{name}: {}", first_line(&out.text)), true),
            Err(e) => (format!("{name} failed: {e}"), false),
        };
        let mut args = args;
        if let Some(map) = args.as_object_mut() {
            for key in SENSITIVE_ARGS {
                if let Some(v) = map.get_mut(key) {
                    *v = json!("[redacted]");
                }
            }
        }
        let entry = NewActivity {
            kind: format!("op.{name}"),
            actor: inv.caller.label.clone(),
            // A model's tool call is the agent acting (on behalf of the caller).
            role: Some(match inv.via_agent {
                Some(_) => ActorRole::Agent,
                None => inv.caller.role(),
            }),
            agent: inv.via_agent.clone(),
            instance: instance_of(name, &args),
            conversation_id: inv.conversation_id,
            summary,
            detail: Some(json!({ "args": args, "ok": ok })),
        };
        self.inner.store.record(entry);
        result
    }
}

/// The instance an operation is about, read from its arguments: `instance`, or the `name` of an
/// `instance_*` operation, or its only target.
fn instance_of(op: &str, args: &Value) -> Option<String> {
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_string);
    if let Some(instance) = text("instance") {
        return Some(instance);
    }
    if !op.starts_with("instance_") {
        return None;
    }
    match args.get("targets").and_then(Value::as_array) {
        Some(targets) if targets.len() == 1 => targets[0].as_str().map(str::to_string),
        _ => text("name"),
    }
}

fn allowed(spec: &OpSpec, inv: &Invocation) -> bool {
    match spec.access {
        Access::Member => true,
        Access::Owner => inv.caller.kind == CallerKind::Owner,
        Access::Workspace => inv.via_agent.as_deref().is_some_and(|a| a != OPERATOR),
    }
}

fn parse<T: DeserializeOwned>(spec: &'static OpSpec, args: Value) -> Result<T, OpError> {
    // Models sometimes send `null` for "no arguments".
    let args = if args.is_null() { json!({}) } else { args };
    serde_json::from_value(args).map_err(|e| OpError::InvalidArgs {
        op: spec.name,
        message: e.to_string(),
    })
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(160).collect()
}

#[cfg(test)]
mod tests;
