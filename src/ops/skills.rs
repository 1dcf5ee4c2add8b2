//! Skill operations: write (a new version), preview (validate, list files, diff against what is
//! installed), install, uninstall, update installed copies, list. Installed copies live in
//! `/workspace/skills/<name>/` of each instance; installing never grants a secret.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::json;

use super::instances::invalid;
use super::{Access, Invocation, NameArgs, OpError, OpSpec, Ops, Output, name_schema};
use crate::instance::files::{self, shell_quote};
use crate::instance::{ExecRequest, InstanceError};
use crate::skills::{self, SkillError};
use crate::store::SkillVersion;

fn targets_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "instances": { "type": "array", "items": { "type": "string" } }
        },
        "required": ["name"]
    })
}

pub const WRITE: OpSpec = OpSpec::tool(
    "skill_write",
    "Create or update a skill (a new version) in the Agent Skills format: SKILL.md with YAML \
                  front matter (name = the skill's name, description) and markdown instructions, plus \
                  optional files under scripts/, references/, assets/. Never put secrets in a skill.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "lowercase letters, digits, hyphens" },
                "skill_md": { "type": "string", "description": "the whole SKILL.md" },
                "files": { "type": "object", "additionalProperties": { "type": "string" },
                           "description": "other files, path -> text, e.g. scripts/run.sh" }
            },
            "required": ["name", "skill_md"]
        })
    },
);

pub const PREVIEW: OpSpec = OpSpec::tool(
    "skill_preview",
    "Validate a skill's latest version, list its files, and show what installing it would \
                  change on each instance (given, or where it is installed). Changes nothing.",
    Access::Owner,
    targets_schema,
);

pub const INSTALL: OpSpec = OpSpec::tool(
    "skill_install",
    "Install a skill's latest version on instances (into /workspace/skills/<name>/).",
    Access::Owner,
    targets_schema,
);

pub const UNINSTALL: OpSpec = OpSpec::tool(
    "skill_uninstall",
    "Remove a skill from instances.",
    Access::Owner,
    targets_schema,
);

pub const UPDATE: OpSpec = OpSpec::tool(
    "skill_update",
    "Bring every installed copy of a skill to its latest version.",
    Access::Owner,
    name_schema,
);

pub const LIST: OpSpec = OpSpec::tool(
    "skill_list",
    "List skills: latest version, description, and where which version is installed.",
    Access::Member,
    || json!({ "type": "object", "properties": {} }),
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    name: String,
    skill_md: String,
    #[serde(default)]
    files: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetArgs {
    name: String,
    #[serde(default)]
    instances: Vec<String>,
}

fn skill_error(op: &'static str, e: SkillError) -> OpError {
    invalid(op, e)
}

/// Validates and stores a version; returns it and whether it is new.
pub async fn store_version(
    ops: &Ops,
    op: &'static str,
    name: &str,
    skill_md: String,
    mut files: BTreeMap<String, String>,
    author: &str,
) -> Result<(SkillVersion, bool), OpError> {
    let name = name.trim();
    let skill = skills::parse(name, &skill_md).map_err(|e| skill_error(op, e))?;
    files.insert("SKILL.md".into(), skill_md);
    skills::check_files(&files).map_err(|e| skill_error(op, e))?;
    let hash = skills::hash(&files);
    if let Ok(latest) = ops.store().skill(name).await
        && latest.hash == hash
    {
        return Ok((latest, false));
    }
    let version = ops
        .store()
        .add_skill_version(name, &hash, &skill.description, author, &files)
        .await?;
    Ok((version, true))
}

pub async fn write(ops: &Ops, inv: &Invocation, args: WriteArgs) -> Result<Output, OpError> {
    let (v, new) = store_version(
        ops,
        WRITE.name,
        &args.name,
        args.skill_md,
        args.files,
        &inv.caller.label,
    )
    .await?;
    let state = if new { "Saved" } else { "Unchanged:" };
    Ok(Output::new(
        format!(
            "{state} skill {} version {} ({} file(s), hash {}).",
            v.name,
            v.version,
            v.files.len(),
            v.hash
        ),
        json!({ "name": v.name, "version": v.version, "hash": v.hash, "files": v.files.keys().collect::<Vec<_>>() }),
    ))
}

fn dir(name: &str) -> String {
    format!("/workspace/skills/{name}")
}

/// The instances to act on: the ones given, or those where the skill is installed.
async fn targets(ops: &Ops, name: &str, given: Vec<String>) -> Result<Vec<String>, OpError> {
    if !given.is_empty() {
        let mut out = Vec::new();
        for instance in given {
            out.push(ops.store().instance(instance.trim()).await?.name);
        }
        return Ok(out);
    }
    Ok(ops
        .store()
        .skill_installs(Some(name), None)
        .await?
        .into_iter()
        .map(|i| i.instance)
        .collect())
}

pub async fn preview(ops: &Ops, args: TargetArgs) -> Result<Output, OpError> {
    let v = ops.store().skill(args.name.trim()).await?;
    let skill_md = v.files.get("SKILL.md").cloned().unwrap_or_default();
    skills::parse(&v.name, &skill_md).map_err(|e| skill_error(PREVIEW.name, e))?;
    let mut text = format!("skill {} version {} is valid. Files:", v.name, v.version);
    for (path, content) in &v.files {
        text.push_str(&format!("\n• {path} ({} bytes)", content.len()));
    }
    let installs = ops.store().skill_installs(Some(&v.name), None).await?;
    let mut diffs = Vec::new();
    for instance in targets(ops, &v.name, args.instances).await? {
        let installed = installs
            .iter()
            .find(|i| i.instance == instance)
            .map(|i| i.version);
        let label = installed.map_or("not installed".to_string(), |n| {
            format!("version {n} installed")
        });
        text.push_str(&format!("\nOn {instance} ({label}):"));
        let mut changed = false;
        for (path, content) in &v.files {
            let current = match files::read(
                ops.instances().as_ref(),
                &instance,
                &format!("{}/{path}", dir(&v.name)),
            )
            .await
            {
                Ok((text, _)) => text,
                Err(InstanceError::Failed(_)) => String::new(),
                Err(e) => return Err(e.into()),
            };
            let diff = skills::line_diff(&current, content, 40);
            if !diff.is_empty() {
                changed = true;
                text.push_str(&format!("\n  {path}:\n    {}", diff.join("\n    ")));
                diffs.push(json!({ "instance": instance, "path": path, "diff": diff }));
            }
        }
        if !changed {
            text.push_str(" no changes");
        }
    }
    Ok(Output::new(
        text,
        json!({ "name": v.name, "version": v.version, "diffs": diffs }),
    ))
}

/// Replaces the installed copy on one instance with version `v`.
async fn install_one(ops: &Ops, v: &SkillVersion, instance: &str) -> Result<(), OpError> {
    let backend = ops.instances().as_ref();
    let clear = ExecRequest::new(format!(
        "rm -rf {} && mkdir -p {}",
        shell_quote(&dir(&v.name)),
        shell_quote(&dir(&v.name))
    ));
    let out = backend.exec(instance, clear).await?;
    if out.exit_code != Some(0) {
        return Err(OpError::Failed(format!(
            "could not prepare {} on {instance}: {}",
            dir(&v.name),
            out.output.trim()
        )));
    }
    for (path, content) in &v.files {
        files::write(
            backend,
            instance,
            &format!("{}/{path}", dir(&v.name)),
            content.as_bytes(),
        )
        .await?;
    }
    ops.store()
        .set_skill_install(&v.name, instance, v.version)
        .await?;
    Ok(())
}

fn report(verb: &str, v: &SkillVersion, results: &[(String, Result<(), OpError>)]) -> Output {
    let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
    let mut text = format!(
        "{ok} of {} {verb} ({} version {})",
        results.len(),
        v.name,
        v.version
    );
    let mut data = Vec::new();
    for (instance, result) in results {
        match result {
            Ok(()) => text.push_str(&format!("\n• {instance}: done")),
            Err(e) => text.push_str(&format!("\n• {instance}: {e}")),
        }
        data.push(json!({ "instance": instance, "ok": result.is_ok() }));
    }
    Output::new(
        text,
        json!({ "name": v.name, "version": v.version, "results": data }),
    )
}

async fn install_all(ops: &Ops, v: &SkillVersion, instances: Vec<String>, verb: &str) -> Output {
    let results = join_all(instances.iter().map(|i| install_one(ops, v, i))).await;
    let results: Vec<_> = instances.into_iter().zip(results).collect();
    report(verb, v, &results)
}

pub async fn install(ops: &Ops, args: TargetArgs) -> Result<Output, OpError> {
    if args.instances.is_empty() {
        return Err(invalid(INSTALL.name, "name the instances to install on"));
    }
    let v = ops.store().skill(args.name.trim()).await?;
    let instances = targets(ops, &v.name, args.instances).await?;
    Ok(install_all(ops, &v, instances, "installed").await)
}

pub async fn update(ops: &Ops, args: NameArgs) -> Result<Output, OpError> {
    let v = ops.store().skill(args.name.trim()).await?;
    let stale: Vec<String> = ops
        .store()
        .skill_installs(Some(&v.name), None)
        .await?
        .into_iter()
        .filter(|i| i.version != v.version)
        .map(|i| i.instance)
        .collect();
    Ok(install_all(ops, &v, stale, "updated").await)
}

pub async fn uninstall(ops: &Ops, args: TargetArgs) -> Result<Output, OpError> {
    if args.instances.is_empty() {
        return Err(invalid(
            UNINSTALL.name,
            "name the instances to remove it from",
        ));
    }
    let name = args.name.trim().to_string();
    let mut text = String::new();
    for instance in targets(ops, &name, args.instances).await? {
        let out = ops
            .instances()
            .exec(
                &instance,
                ExecRequest::new(format!("rm -rf {}", shell_quote(&dir(&name)))),
            )
            .await?;
        if out.exit_code != Some(0) {
            return Err(OpError::Failed(format!(
                "could not remove {name} from {instance}: {}",
                out.output.trim()
            )));
        }
        ops.store().remove_skill_install(&name, &instance).await?;
        text.push_str(&format!("Removed {name} from {instance}. "));
    }
    Ok(Output::new(
        text.trim_end().to_string(),
        json!({ "name": name }),
    ))
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let all = ops.store().list_skills().await?;
    let installs = ops.store().skill_installs(None, None).await?;
    let mut text = format!("{} skill(s)", all.len());
    let mut data = Vec::new();
    for v in &all {
        let places: Vec<String> = installs
            .iter()
            .filter(|i| i.skill == v.name)
            .map(|i| format!("{}@v{}", i.instance, i.version))
            .collect();
        let places_text = if places.is_empty() {
            "not installed".to_string()
        } else {
            places.join(", ")
        };
        text.push_str(&format!(
            "\n• {} v{} — {} — {places_text}",
            v.name, v.version, v.description
        ));
        data.push(json!({ "name": v.name, "version": v.version, "description": v.description, "installed": places }));
    }
    Ok(Output::new(text, json!({ "skills": data })))
}

pub const TEST: OpSpec = OpSpec::tool(
    "skill_test",
    "Try a skill: clone the instance, install the skill's latest version on the clone, run \
                  the prompt there as a throwaway agent, report the result, and remove the clone.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "the skill" },
                "instance": { "type": "string", "description": "the instance to clone" },
                "prompt": { "type": "string", "description": "what to ask the test agent" }
            },
            "required": ["name", "instance", "prompt"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestArgs {
    name: String,
    instance: String,
    prompt: String,
}

pub async fn test(ops: &Ops, inv: &Invocation, args: TestArgs) -> Result<Output, OpError> {
    let v = ops.store().skill(args.name.trim()).await?;
    let source = ops.store().instance(args.instance.trim()).await?;
    let turns = ops.turn_runner()?;
    let clone = format!("skilltest-{:08x}", rand::random::<u32>());
    super::instance_admin::clone_instance(ops, &source.name, &clone).await?;
    // From here on the clone exists: whatever happens (a cancelled call too), it is removed.
    let mut made = super::throwaway::Throwaway::new(ops);
    made.add(clone.clone());
    let outcome = async {
        install_one(ops, &v, &clone).await?;
        let agent =
            crate::domain::AgentName::parse(&clone).map_err(|e| OpError::Failed(e.to_string()))?;
        ops.store()
            .create_agent(&agent, "A throwaway agent that tries a skill.", None)
            .await?;
        ops.store().set_instance_agent(&clone, Some(&clone)).await?;
        let text = format!(
            "[skill test] The skill {} is installed in /workspace/skills/{}/. Use it for this: {}",
            v.name, v.name, args.prompt
        );
        let chat = crate::domain::ChatRef::new("skill-test", &clone);
        Ok::<_, OpError>(
            turns
                .run_turn(chat, clone.clone(), inv.caller.clone(), text)
                .await,
        )
    }
    .await;
    made.remove().await;
    let (ok, summary) = outcome?;
    let verdict = if ok { "answered" } else { "failed" };
    Ok(Output::new(
        format!(
            "Tested skill {} v{} on a clone of {}: the test agent {verdict}: {summary}",
            v.name, v.version, source.name
        ),
        json!({ "name": v.name, "version": v.version, "ok": ok, "summary": summary, "clone_removed": true }),
    ))
}
