//! Instance settings: read them, change them (recreating the container, keeping `/workspace`),
//! and clone an instance with a copy of its workspace.

use serde::Deserialize;
use serde_json::json;

use super::instances::{Settings, apply_settings, bring_up, invalid, record_json};
use super::{Access, NameArgs, OpError, OpSpec, Ops, Output, name_schema};
use crate::domain::AgentName;
use crate::store::{InstanceRecord, InstanceStatus};

pub const SETTINGS: OpSpec = OpSpec::tool(
    "instance_settings",
    "Show an instance's settings: image, limits, network, tags, project, owner agent.",
    Access::Member,
    name_schema,
);

pub const UPDATE: OpSpec = OpSpec::tool(
    "instance_update",
    "Change an instance's image, memory, cpus, network, tags or project. Changing the \
                  image, limits or network recreates the container; /workspace is kept.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "image": { "type": "string", "description": "an image, or \"workstation\" for the current image of [docker] (the workstation image of its packages and setup, built if needed)" },
                "memory_mb": { "type": "integer", "minimum": 64 },
                "cpus": { "type": "number", "minimum": 0.1 },
                "network": { "type": "string" },
                "tags": { "type": "array", "items": { "type": "string" } },
                "project": { "type": "string" }
            },
            "required": ["name"]
        })
    },
);

pub const CLONE: OpSpec = OpSpec::tool(
    "instance_clone",
    "Create a new instance with the same settings and a copy of another's /workspace.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "the instance to copy" },
                "new_name": { "type": "string" }
            },
            "required": ["name", "new_name"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    name: String,
    image: Option<String>,
    memory_mb: Option<u64>,
    cpus: Option<f64>,
    network: Option<String>,
    tags: Option<Vec<String>>,
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneArgs {
    name: String,
    new_name: String,
}

pub async fn settings(ops: &Ops, args: NameArgs) -> Result<Output, OpError> {
    let r = ops.store().instance(args.name.trim()).await?;
    let text = format!(
        "{}: {} · image {} · {} MiB · {} CPU · {} pids · network {} · tags [{}] · project {} · agent {}",
        r.name,
        r.status.as_str(),
        r.image,
        r.memory_mb,
        r.cpus,
        r.pids_limit,
        r.network,
        r.tags.join(", "),
        if r.project.is_empty() {
            "-"
        } else {
            &r.project
        },
        r.agent.as_deref().unwrap_or("-"),
    );
    Ok(Output::new(text, record_json(&r)))
}

pub async fn update(ops: &Ops, args: UpdateArgs) -> Result<Output, OpError> {
    let mut record = ops.store().instance(args.name.trim()).await?;
    // "workstation": whatever new instances get now (the workstation image when [docker]
    // packages or setup are set).
    let image = args.image.map(|i| match i.trim() {
        "workstation" => ops.instance_defaults().image.clone(),
        other => other.to_string(),
    });
    let changes = Settings {
        image,
        memory_mb: args.memory_mb,
        cpus: args.cpus,
        network: args.network,
    };
    let recreate = apply_settings(&mut record, UPDATE.name, changes)?;
    if let Some(tags) = args.tags {
        record.tags = tags;
    }
    if let Some(project) = args.project {
        record.project = project.trim().to_string();
    }
    let record = ops.store().update_instance_settings(&record).await?;
    if !recreate {
        return Ok(Output::new(
            format!("Updated instance {}.", record.name),
            record_json(&record),
        ));
    }
    ops.store()
        .set_instance_status(&record.name, InstanceStatus::Provisioning, None)
        .await?;
    if let Err(e) = ops.instances().remove(&record.name, true).await {
        let message = e.to_string();
        ops.store()
            .set_instance_status(&record.name, InstanceStatus::Failed, Some(&message))
            .await?;
        return Err(e.into());
    }
    let mut out = bring_up(ops, &record, None, "Recreated").await?;
    out.text.push_str(" /workspace was kept.");
    Ok(out)
}

/// Clones `source` into a new instance `new_name` (for operations that need a throwaway copy).
pub(super) async fn clone_instance(
    ops: &Ops,
    source: &str,
    new_name: &str,
) -> Result<Output, OpError> {
    let args = CloneArgs {
        name: source.to_string(),
        new_name: new_name.to_string(),
    };
    clone(ops, args).await
}

pub async fn clone(ops: &Ops, args: CloneArgs) -> Result<Output, OpError> {
    let source = ops.store().instance(args.name.trim()).await?;
    let name = AgentName::parse(&args.new_name).map_err(|e| invalid(CLONE.name, e))?;
    let copy = InstanceRecord {
        name: name.to_string(),
        agent: None,
        status: InstanceStatus::Provisioning,
        last_error: None,
        ..source.clone()
    };
    // The copy is made on the source's engine, so it must fit there.
    let want = crate::instance::Placement::Host(source.host.clone());
    super::hosts::place(ops, &copy.name, &want, copy.memory_mb, false).await?;
    let record = ops.store().create_instance(&copy).await?;
    let mut out = bring_up(ops, &record, Some(&source.name), "Cloned").await?;
    out.text
        .push_str(&format!(" Its /workspace is a copy of {}'s.", source.name));
    out.data["cloned_from"] = json!(source.name);
    Ok(out)
}
