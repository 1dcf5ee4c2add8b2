//! Secret operations. Values go in through `secret_create` and `secret_rotate`, which the model
//! is never offered (it works with names; people send values with `/secret`), and never come
//! out: listings show names, scope, grants and dates.

use serde::Deserialize;
use serde_json::json;

use super::instances::invalid;
use super::{Access, NameArgs, OpError, OpSpec, Ops, Output, name_schema};
use crate::domain::format_millis;
use crate::secrets::{Redactor, valid_name};
use crate::store::{GrantTarget, InstanceRecord, StoreError};

pub const CREATE: OpSpec = OpSpec::tool(
    "secret_create",
    "Store a new secret (encrypted). Values come from people, never from the model.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "environment-variable form, e.g. GITHUB_TOKEN" },
                "value": { "type": "string" },
                "description": { "type": "string" },
                "global": { "type": "boolean", "description": "every instance gets it (default: only granted ones)" }
            },
            "required": ["name", "value"]
        })
    },
);

pub const ROTATE: OpSpec = OpSpec::tool(
    "secret_rotate",
    "Replace a secret's value; commands use the new value from the next one on.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "name": { "type": "string" }, "value": { "type": "string" } },
            "required": ["name", "value"]
        })
    },
);

pub const LIST: OpSpec = OpSpec::tool(
    "secret_list",
    "List secrets: names, scope, grants and dates (never values).",
    Access::Owner,
    || json!({ "type": "object", "properties": {} }),
);

fn grant_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "the secret" },
            "instance": { "type": "string" },
            "tag": { "type": "string", "description": "every instance with this tag" }
        },
        "required": ["name"]
    })
}

pub const GRANT: OpSpec = OpSpec::tool(
    "secret_grant",
    "Give a secret to an instance or to every instance with a tag: commands there see it \
                  as an environment variable.",
    Access::Owner,
    grant_schema,
);

pub const REVOKE: OpSpec = OpSpec::tool(
    "secret_revoke",
    "Take a secret back from an instance or a tag.",
    Access::Owner,
    grant_schema,
);

pub const DELETE: OpSpec = OpSpec::tool(
    "secret_delete",
    "Delete a secret and its grants.",
    Access::Owner,
    name_schema,
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    name: String,
    value: String,
    description: Option<String>,
    global: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateArgs {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantArgs {
    name: String,
    instance: Option<String>,
    tag: Option<String>,
}

fn checked_name(op: &'static str, name: &str) -> Result<String, OpError> {
    let name = name.trim().to_string();
    if !valid_name(&name) {
        return Err(invalid(
            op,
            format!(
                "{name:?} is not a valid name: use the form of an environment variable, like GITHUB_TOKEN"
            ),
        ));
    }
    Ok(name)
}

async fn seal_and_store(
    ops: &Ops,
    name: &str,
    value: &str,
    description: Option<&str>,
    global: Option<bool>,
) -> Result<bool, OpError> {
    if value.is_empty() {
        return Err(OpError::InvalidArgs {
            op: CREATE.name,
            message: "the value is empty".into(),
        });
    }
    let key = ops.master_key();
    let sealed = key.seal(name, value.as_bytes());
    let created = ops
        .store()
        .put_secret(name, description, global, &sealed, key.fingerprint())
        .await?;
    Redactor::global().set(name, value);
    Ok(created)
}

pub async fn create(ops: &Ops, args: CreateArgs) -> Result<Output, OpError> {
    let name = checked_name(CREATE.name, &args.name)?;
    match ops.store().secret(&name).await {
        Ok(_) => {
            return Err(OpError::Conflict(format!(
                "secret {name} already exists; rotate it to change the value"
            )));
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    seal_and_store(
        ops,
        &name,
        &args.value,
        args.description.as_deref(),
        args.global,
    )
    .await?;
    let scope = if args.global == Some(true) {
        "every instance"
    } else {
        "no instance yet; grant it"
    };
    Ok(Output::new(
        format!("Stored secret {name} (encrypted). Scope: {scope}."),
        json!({ "name": name, "global": args.global == Some(true) }),
    ))
}

pub async fn rotate(ops: &Ops, args: RotateArgs) -> Result<Output, OpError> {
    let name = checked_name(ROTATE.name, &args.name)?;
    ops.store().secret(&name).await?;
    seal_and_store(ops, &name, &args.value, None, None).await?;
    Ok(Output::new(
        format!("Rotated secret {name}; commands use the new value from now on."),
        json!({ "name": name }),
    ))
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let secrets = ops.store().list_secrets().await?;
    let mut text = format!("{} secret(s)", secrets.len());
    let mut data = Vec::new();
    for s in &secrets {
        let scope = if s.global {
            "global".to_string()
        } else if s.grants.is_empty() {
            "not granted".to_string()
        } else {
            s.grants.join(", ")
        };
        text.push_str(&format!(
            "\n• {} — {scope} — updated {}",
            s.name,
            format_millis(s.updated_at)
        ));
        data.push(json!({
            "name": s.name,
            "description": s.description,
            "global": s.global,
            "grants": s.grants,
            "created_at": format_millis(s.created_at),
            "updated_at": format_millis(s.updated_at),
        }));
    }
    Ok(Output::new(text, json!({ "secrets": data })))
}

fn target(op: &'static str, args: &GrantArgs) -> Result<GrantTarget, OpError> {
    match (&args.instance, &args.tag) {
        (Some(instance), None) => Ok(GrantTarget::Instance(instance.trim().to_ascii_lowercase())),
        (None, Some(tag)) => Ok(GrantTarget::Tag(tag.trim().to_ascii_lowercase())),
        _ => Err(invalid(op, "name exactly one of instance or tag")),
    }
}

fn describe(target: &GrantTarget) -> String {
    match target {
        GrantTarget::Instance(name) => format!("instance {name}"),
        GrantTarget::Tag(tag) => format!("instances tagged {tag}"),
    }
}

pub async fn grant(ops: &Ops, args: GrantArgs) -> Result<Output, OpError> {
    let name = checked_name(GRANT.name, &args.name)?;
    let target = target(GRANT.name, &args)?;
    if let GrantTarget::Instance(instance) = &target {
        ops.store().instance(instance).await?;
    }
    ops.store().grant_secret(&name, &target).await?;
    Ok(Output::new(
        format!("Granted {name} to {}.", describe(&target)),
        json!({ "name": name, "target": describe(&target) }),
    ))
}

pub async fn revoke(ops: &Ops, args: GrantArgs) -> Result<Output, OpError> {
    let name = checked_name(REVOKE.name, &args.name)?;
    let target = target(REVOKE.name, &args)?;
    let had = ops.store().revoke_secret(&name, &target).await?;
    let text = if had {
        format!("Revoked {name} from {}.", describe(&target))
    } else {
        format!("{name} was not granted to {}.", describe(&target))
    };
    Ok(Output::new(text, json!({ "name": name, "revoked": had })))
}

pub async fn delete(ops: &Ops, args: NameArgs) -> Result<Output, OpError> {
    let name = checked_name(DELETE.name, &args.name)?;
    ops.store().delete_secret(&name).await?;
    Ok(Output::new(
        format!("Deleted secret {name}."),
        json!({ "deleted": name }),
    ))
}

/// The environment of one command in `instance`: every secret it receives, opened now, so a
/// rotation applies from the next command. A secret that cannot be opened fails the command.
pub async fn env_for(
    ops: &Ops,
    instance: &InstanceRecord,
) -> Result<Vec<(String, String)>, OpError> {
    let key = ops.master_key();
    let mut env = Vec::new();
    for secret in ops
        .store()
        .secrets_for(&instance.name, &instance.tags)
        .await?
    {
        let value = key
            .open(&secret.name, &secret.sealed, &secret.key_id)
            .map_err(|e| OpError::Failed(e.to_string()))?;
        let value = String::from_utf8(value)
            .map_err(|_| OpError::Failed(format!("secret {} is not valid text", secret.name)))?;
        env.push((secret.name, value));
    }
    Ok(env)
}
