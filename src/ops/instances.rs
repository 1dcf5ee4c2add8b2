//! Instance operations: create, list, delete, start/stop/restart (one, several, or by tag, in
//! parallel), logs, exec, and file browsing.

use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, OpError, OpSpec, Ops, Output};
use crate::domain::{AgentName, format_millis};
use crate::instance::{InstanceError, InstanceSpec, Placement, RunState};
use crate::store::{InstanceRecord, InstanceStatus};

fn schema_targets() -> Value {
    json!({
        "type": "object",
        "properties": {
            "targets": { "type": "array", "items": { "type": "string" }, "description": "instance names" },
            "tag": { "type": "string", "description": "every instance with this tag" }
        }
    })
}

pub const CREATE: OpSpec = OpSpec::tool(
    "instance_create",
    "Create an instance: a hardened Docker container with a persistent /workspace volume. \
                  Unset settings come from [docker] in the config.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "lowercase letters, digits and hyphens" },
                "image": { "type": "string" },
                "memory_mb": { "type": "integer", "minimum": 64 },
                "cpus": { "type": "number", "minimum": 0.1 },
                "network": { "type": "string", "description": "\"none\" or \"bridge\"" },
                "tags": { "type": "array", "items": { "type": "string" } },
                "project": { "type": "string", "description": "what this instance is for" },
                "host": { "type": "string", "description": "the Docker host to put it on (default: the least-loaded host that fits)" },
                "labels": { "type": "object", "additionalProperties": { "type": "string" }, "description": "put it on a host with these labels, e.g. {\"region\": \"eu\"}" }
            },
            "required": ["name"]
        })
    },
);

pub const LIST: OpSpec = OpSpec {
    name: "instance_list",
    description: "List instances with their live status, image, limits, tags and project.",
    access: Access::Member,
    command: Some("instances"),
    positional: &[],
    schema: || json!({ "type": "object", "properties": {} }),
};

pub const DELETE: OpSpec = OpSpec::tool(
    "instance_delete",
    "Delete an instance's container, and its /workspace volume unless keep_workspace is true.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "name": { "type": "string" }, "keep_workspace": { "type": "boolean" } },
            "required": ["name"]
        })
    },
);

pub const START: OpSpec = OpSpec::tool(
    "instance_start",
    "Start instances, given by name or by tag; a missing container is recreated from its \
                  stored settings with its workspace. Reports a result per instance.",
    Access::Owner,
    schema_targets,
);

pub const STOP: OpSpec = OpSpec::tool(
    "instance_stop",
    "Stop instances, given by name or by tag; their workspaces are kept.",
    Access::Owner,
    schema_targets,
);

pub const RESTART: OpSpec = OpSpec::tool(
    "instance_restart",
    "Restart instances, given by name or by tag; reports a result per instance.",
    Access::Owner,
    schema_targets,
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    pub(super) name: String,
    pub(super) image: Option<String>,
    pub(super) memory_mb: Option<u64>,
    pub(super) cpus: Option<f64>,
    pub(super) network: Option<String>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    #[serde(default)]
    pub(super) project: String,
    pub(super) host: Option<String>,
    pub(super) labels: Option<std::collections::BTreeMap<String, String>>,
}

impl CreateArgs {
    /// An instance with the default settings.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            image: None,
            memory_mb: None,
            cpus: None,
            network: None,
            tags: Vec::new(),
            project: String::new(),
            host: None,
            labels: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    name: String,
    #[serde(default)]
    keep_workspace: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetArgs {
    #[serde(default)]
    targets: Vec<String>,
    tag: Option<String>,
}

/// Fleet actions.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

pub(super) fn invalid(op: &'static str, message: impl ToString) -> OpError {
    OpError::InvalidArgs {
        op,
        message: message.to_string(),
    }
}

impl From<InstanceError> for OpError {
    fn from(e: InstanceError) -> Self {
        OpError::Failed(e.to_string())
    }
}

pub(super) fn record_json(r: &InstanceRecord) -> Value {
    json!({
        "name": r.name,
        "status": r.status.as_str(),
        "image": r.image,
        "memory_mb": r.memory_mb,
        "cpus": r.cpus,
        "pids_limit": r.pids_limit,
        "network": r.network,
        "tags": r.tags,
        "project": r.project,
        "agent": r.agent,
        "last_error": r.last_error,
        "created_at": format_millis(r.created_at),
        "host": r.host,
    })
}

pub(super) fn status_of(state: &RunState) -> InstanceStatus {
    match state {
        RunState::Running => InstanceStatus::Active,
        RunState::Stopped => InstanceStatus::Stopped,
        RunState::Missing => InstanceStatus::Missing,
    }
}

/// Accepts `none`, `bridge` and user-defined networks; never the host's network stack.
fn check_network(op: &'static str, network: &str) -> Result<(), OpError> {
    let valid = !network.is_empty()
        && network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid || network == "host" || network.starts_with("container") {
        return Err(invalid(
            op,
            format!("network {network:?} is not allowed: use \"none\" or \"bridge\""),
        ));
    }
    Ok(())
}

pub async fn create(ops: &Ops, args: CreateArgs) -> Result<Output, OpError> {
    let name = AgentName::parse(&args.name).map_err(|e| invalid(CREATE.name, e))?;
    let defaults = ops.instance_defaults();
    let mut record = InstanceRecord {
        id: 0,
        name: name.to_string(),
        image: defaults.image.clone(),
        memory_mb: i64::try_from(defaults.memory_mb).unwrap_or(i64::MAX),
        cpus: defaults.cpus,
        pids_limit: defaults.pids_limit,
        network: defaults.network.clone(),
        tags: args.tags,
        project: args.project.trim().to_string(),
        agent: None,
        status: InstanceStatus::Provisioning,
        last_error: None,
        created_at: 0,
        host: String::new(),
    };
    let changes = Settings {
        image: args.image,
        memory_mb: args.memory_mb,
        cpus: args.cpus,
        network: args.network,
    };
    apply_settings(&mut record, CREATE.name, changes)?;
    let want = match (args.host.filter(|h| !h.trim().is_empty()), args.labels) {
        (Some(host), _) => Placement::Host(host.trim().to_string()),
        (None, Some(labels)) if !labels.is_empty() => Placement::Labels(labels),
        _ => Placement::Anywhere,
    };
    record.host = super::hosts::place(ops, &record.name, &want, record.memory_mb, false).await?;
    let record = ops.store().create_instance(&record).await?;
    bring_up(ops, &record, None, "Created").await
}

/// Container settings that may change; `None` keeps the current value.
pub(super) struct Settings {
    pub(super) image: Option<String>,
    pub(super) memory_mb: Option<u64>,
    pub(super) cpus: Option<f64>,
    pub(super) network: Option<String>,
}

/// Validates and applies settings; returns whether the container must be recreated.
pub(super) fn apply_settings(
    record: &mut InstanceRecord,
    op: &'static str,
    changes: Settings,
) -> Result<bool, OpError> {
    let before = spec_of(record);
    if let Some(memory_mb) = changes.memory_mb {
        if !(64..=1024 * 1024).contains(&memory_mb) {
            return Err(invalid(op, "memory_mb must be between 64 and 1048576"));
        }
        record.memory_mb = i64::try_from(memory_mb).unwrap_or(i64::MAX);
    }
    if let Some(cpus) = changes.cpus {
        if !(0.1..=256.0).contains(&cpus) {
            return Err(invalid(op, "cpus must be between 0.1 and 256"));
        }
        record.cpus = cpus;
    }
    if let Some(network) = changes.network {
        check_network(op, &network)?;
        record.network = network;
    }
    if let Some(image) = changes
        .image
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
    {
        record.image = image;
    }
    Ok(spec_of(record) != before)
}

/// Provisions the record's container (copying `copy_from`'s workspace into a new volume when
/// given) and records the outcome.
pub(super) async fn bring_up(
    ops: &Ops,
    record: &InstanceRecord,
    copy_from: Option<&str>,
    verb: &str,
) -> Result<Output, OpError> {
    match provision(ops, record, copy_from).await {
        Ok(()) => {
            ops.store()
                .set_instance_status(&record.name, InstanceStatus::Active, None)
                .await?;
            let record = ops.store().instance(&record.name).await?;
            Ok(Output::new(
                format!(
                    "{verb} instance {} ({}, {} MiB, {} CPU, network {}).",
                    record.name, record.image, record.memory_mb, record.cpus, record.network
                ),
                record_json(&record),
            ))
        }
        Err(e) => {
            let message = e.to_string();
            ops.store()
                .set_instance_status(&record.name, InstanceStatus::Failed, Some(&message))
                .await?;
            Err(OpError::Failed(format!(
                "instance {} could not be set up: {message}",
                record.name
            )))
        }
    }
}

pub(super) fn spec_of(r: &InstanceRecord) -> InstanceSpec {
    InstanceSpec {
        name: r.name.clone(),
        image: r.image.clone(),
        memory_mb: u64::try_from(r.memory_mb).unwrap_or(0),
        cpus: r.cpus,
        pids_limit: r.pids_limit,
        network: r.network.clone(),
    }
}

pub(super) async fn provision(
    ops: &Ops,
    record: &InstanceRecord,
    copy_from: Option<&str>,
) -> Result<(), InstanceError> {
    let host = ops.fleet().on(&record.host)?;
    let image = record.image.clone();
    let key = format!("pull:{image}");
    let store = ops.store().clone();
    let (name, instance) = (image.clone(), record.name.clone());
    let progress = move |line: String| {
        tracing::info!(image = %image, "{line}");
        // A workstation image's build is in the feed: when it starts and when it is done.
        use crate::instance::image::{BUILDING, BUILT};
        if line.starts_with(BUILDING) || line.starts_with(BUILT) {
            store.record(crate::store::NewActivity {
                kind: "image.build".into(),
                actor: "docker".into(),
                instance: Some(instance.clone()),
                summary: line.clone(),
                detail: Some(serde_json::json!({ "image": name })),
                ..Default::default()
            });
        }
        super::report_progress(&key, line);
    };
    host.run(host.backend().ensure_image(&record.image, &progress))
        .await?;
    ops.fleet().place(&record.name, &record.host);
    ops.instances().create(&spec_of(record), copy_from).await
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let fleet = super::hosts::reconcile(ops).await?;
    let mut text = format!("{} instance(s)", fleet.records.len());
    for r in &fleet.records {
        let tags = if r.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", r.tags.join(", "))
        };
        let project = if r.project.is_empty() {
            String::new()
        } else {
            format!(" — {}", r.project)
        };
        text.push_str(&format!(
            "\n• {} {} on {} ({}){tags}{project}",
            r.name,
            r.status.as_str(),
            r.host,
            r.image
        ));
    }
    if !fleet.unknown.is_empty() {
        text.push_str(&format!(
            "\nContainers labelled as ours but unknown here: {}",
            fleet.unknown.join(", ")
        ));
    }
    if let Some(e) = &fleet.unreachable {
        text.push_str(&format!(
            "\nInstances on hosts that do not answer keep their last known state: {e}"
        ));
    }
    Ok(Output::new(
        text,
        json!({
            "instances": fleet.records.iter().map(record_json).collect::<Vec<_>>(),
            "unknown_containers": fleet.unknown,
            "warning": fleet.unreachable,
        }),
    ))
}

/// Deletes an instance with its workspace (for throwaway copies).
pub(super) async fn delete_instance(ops: &Ops, name: &str) -> Result<Output, OpError> {
    let args = DeleteArgs {
        name: name.to_string(),
        keep_workspace: false,
    };
    delete(ops, args).await
}

pub async fn delete(ops: &Ops, args: DeleteArgs) -> Result<Output, OpError> {
    let record = ops.store().instance(args.name.trim()).await?;
    ops.instances()
        .remove(&record.name, args.keep_workspace)
        .await?;
    ops.store().delete_instance(&record.name).await?;
    ops.fleet().forget(&record.name);
    let kept = if args.keep_workspace {
        " Its workspace volume was kept."
    } else {
        ""
    };
    Ok(Output::new(
        format!("Deleted instance {}.{kept}", record.name),
        json!({ "deleted": record.name, "workspace_kept": args.keep_workspace }),
    ))
}

/// Starts, stops or restarts each target in parallel; one result per target.
pub async fn fleet(
    ops: &Ops,
    spec: &'static OpSpec,
    action: Action,
    args: TargetArgs,
) -> Result<Output, OpError> {
    let mut names: Vec<String> = args
        .targets
        .iter()
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    if let Some(tag) = args.tag.as_deref().map(|t| t.trim().to_ascii_lowercase()) {
        let tagged = ops.store().list_instances().await?;
        names.extend(
            tagged
                .into_iter()
                .filter(|r| r.tags.contains(&tag))
                .map(|r| r.name),
        );
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(invalid(
            spec.name,
            "name the instances (targets) or a tag that matches some",
        ));
    }
    let results = join_all(names.iter().map(|name| fleet_one(ops, action, name))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let verb = match action {
        Action::Start => "started",
        Action::Stop => "stopped",
        Action::Restart => "restarted",
    };
    let mut text = format!("{ok} of {} {verb}", names.len());
    let mut data = Vec::new();
    for (name, result) in names.iter().zip(&results) {
        match result {
            Ok(()) => {
                text.push_str(&format!("\n• {name}: {verb}"));
                data.push(json!({ "name": name, "ok": true }));
            }
            Err(e) => {
                text.push_str(&format!("\n• {name}: {e}"));
                data.push(json!({ "name": name, "ok": false, "error": e.to_string() }));
            }
        }
    }
    Ok(Output::new(text, json!({ "results": data })))
}

async fn fleet_one(ops: &Ops, action: Action, name: &str) -> Result<(), OpError> {
    let record = ops.store().instance(name).await?;
    let backend = ops.instances();
    let result = match action {
        // A container removed behind our back is recreated from its stored settings; the
        // workspace volume, if it survived, is reused as it is.
        Action::Start => match backend.start(&record.name).await {
            Err(InstanceError::Missing(_)) => provision(ops, &record, None).await,
            other => other,
        },
        Action::Stop => backend.stop(&record.name).await,
        Action::Restart => backend.restart(&record.name).await,
    };
    let status = match (&result, action) {
        (Ok(()), Action::Stop) => InstanceStatus::Stopped,
        (Ok(()), _) => InstanceStatus::Active,
        (Err(InstanceError::Missing(_)), _) => InstanceStatus::Missing,
        (Err(InstanceError::Unreachable(_)), _) => InstanceStatus::Unreachable,
        (Err(_), _) => record.status,
    };
    let error = result.as_ref().err().map(ToString::to_string);
    ops.store()
        .set_instance_status(&record.name, status, error.as_deref())
        .await?;
    Ok(result?)
}

impl Ops {
    /// Fills the workspace volume of a known instance from a saved archive (a restore onto a
    /// clean engine), then creates its container from its record as the engine lacks it.
    pub async fn restore_workspace(
        &self,
        name: &str,
        archive: &std::path::Path,
    ) -> Result<(), OpError> {
        let record = self.inner.store.instance(name).await?;
        let spec = spec_of(&record);
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| OpError::Failed(format!("cannot read {}: {e}", archive.display())))?;
        // Read in pieces as the engine takes them: a workspace may be large.
        let chunks = futures_util::stream::unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = vec![0u8; 256 * 1024];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(bytes::Bytes::from(buffer)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let backend = &self.inner.instances;
        backend.import_workspace(&spec, Box::pin(chunks)).await?;
        let progress = |_: String| {};
        backend.ensure_image(&spec.image, &progress).await?;
        backend.create(&spec, None).await?;
        Ok(())
    }
}
