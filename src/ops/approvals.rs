//! Approvals: a model's call of an operation that needs an owner's yes waits here, in the
//! turn that made it, until an owner decides in the chat (a button, `/approve <id>`,
//! `/deny <id>`, `POST /api/approvals/<id>`), the request times out, or the turn goes away.
//!
//! A person's own command or form is already a human decision and never asks. Each request is
//! a row decided exactly once by a conditional update, so a double tap runs nothing twice; the
//! waiting turn hears the decision through a channel kept here. A restart cannot resume a
//! waiting turn: requests still pending then are expired, and their chats are told.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Access, Invocation, OpError, OpSpec, Ops, Output, PROGRESS, parse};
use crate::domain::{ActorRole, CallerKind, now_millis};
use crate::store::{ApprovalRecord, NewActivity, NewApproval};

/// What needs an owner's yes when a model asks for it.
#[derive(Debug, Clone)]
pub struct ApprovalPolicy {
    /// Operations that always do.
    pub require: Vec<String>,
    /// A call over more instances than this does too.
    pub max_targets: usize,
    /// An undecided request counts as denied after this long.
    pub timeout: Duration,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            require: [
                "instance_delete",
                "agent_delete",
                "secret_delete",
                "instance_move",
                "webhook_delete",
                "automation_delete",
                "budget_set",
            ]
            .map(String::from)
            .to_vec(),
            max_targets: 3,
            timeout: Duration::from_secs(600),
        }
    }
}

/// The requests waiting in turns of this process, by code.
#[derive(Default)]
pub(super) struct Waiting {
    turns: Mutex<HashMap<String, oneshot::Sender<Decision>>>,
}

/// How a request was decided, and by whom.
#[derive(Debug, Clone)]
struct Decision {
    approved: bool,
    by: String,
}

pub const APPROVE: OpSpec = OpSpec {
    name: "approve",
    description: "Approve a waiting request of a model to run an operation (owners only).",
    access: Access::Member,
    command: Some("approve"),
    positional: &["id"],
    schema: schema_id,
};

pub const DENY: OpSpec = OpSpec {
    name: "deny",
    description: "Deny a waiting request of a model to run an operation (owners only).",
    access: Access::Member,
    command: Some("deny"),
    positional: &["id"],
    schema: schema_id,
};

fn schema_id() -> Value {
    json!({
        "type": "object",
        "properties": { "id": { "type": "string", "description": "the request's id" } },
        "required": ["id"]
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdArgs {
    id: String,
}

/// Removes a turn's waiter when the turn stops waiting for any reason (decided, timed out,
/// cancelled); a request nobody decided is then expired, so it can never run later.
struct Pending<'a> {
    ops: &'a Ops,
    code: String,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let waiter = self
            .ops
            .inner
            .waiting
            .turns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.code);
        // Nobody decided and the turn stopped waiting: expire it, and say so in the chat. (A
        // process going down expires it at its next start instead.)
        if waiter.is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (ops, code) = (self.ops.clone(), self.code.clone());
            runtime.spawn(async move { ops.expire(&code, "the turn stopped waiting").await });
        }
    }
}

impl Ops {
    /// Why this call needs an owner's yes, if it does: only a model's calls ever do.
    pub(super) async fn approval_needed(
        &self,
        spec: &OpSpec,
        inv: &Invocation,
        args: &Value,
    ) -> Option<String> {
        // A person's own command or form is already a human decision.
        inv.via_agent.as_ref()?;
        let policy = &self.inner.approval_policy;
        if policy.require.iter().any(|op| op == spec.name) {
            return Some(describe(spec.name, args));
        }
        // A model never changes a spending limit on its own, whichever operation it uses.
        let budget = args.get("budget_daily_usd").filter(|v| !v.is_null());
        if let (true, Some(usd)) = (policy.require.iter().any(|op| op == "budget_set"), budget) {
            let agent = args.get("name").and_then(Value::as_str).unwrap_or("?");
            return Some(format!("set agent {agent}'s daily budget to {usd} USD"));
        }
        let targets = self.target_count(args).await;
        (targets > policy.max_targets).then(|| describe(spec.name, args))
    }

    /// How many instances a call acts on: its `targets`, or the instances with its `tag`.
    async fn target_count(&self, args: &Value) -> usize {
        if let Some(targets) = args.get("targets").and_then(Value::as_array) {
            return targets.len();
        }
        match args.get("tag").and_then(Value::as_str) {
            Some(tag) => self
                .inner
                .store
                .list_instances()
                .await
                .map(|all| {
                    all.iter()
                        .filter(|i| i.tags.iter().any(|t| t == tag))
                        .count()
                })
                .unwrap_or(usize::MAX),
            None => 0,
        }
    }

    /// Asks the chat for an owner's yes and waits for it. `Ok` names who approved; otherwise
    /// the error says why the operation did not run.
    pub(super) async fn wait_for_approval(
        &self,
        spec: &OpSpec,
        inv: &Invocation,
        args: &Value,
        summary: String,
    ) -> Result<String, OpError> {
        let Some(chat) = inv.chat.clone() else {
            return Err(OpError::Refused(format!(
                "not run: {summary} needs an owner's approval, and there is no chat to ask in"
            )));
        };
        let runner = self.turn_runner()?;
        let policy = &self.inner.approval_policy;
        let code = new_code();
        let store = &self.inner.store;
        let mut shown_args = args.clone();
        crate::secrets::Redactor::global().redact_json(&mut shown_args);
        store
            .create_approval(&NewApproval {
                code: &code,
                op: spec.name,
                args: &shown_args.to_string(),
                summary: &summary,
                chat: Some(&chat),
                requested_by: &inv.caller.label,
                agent: inv.via_agent.as_deref(),
                expires_at: now_millis() + policy.timeout.as_millis() as i64,
            })
            .await?;
        let (tx, rx) = oneshot::channel();
        self.inner
            .waiting
            .turns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(code.clone(), tx);
        let _pending = Pending {
            ops: self,
            code: code.clone(),
        };
        self.note_approval(
            "approval.requested",
            inv.via_agent.as_deref().unwrap_or_default(),
            ActorRole::Agent,
            format!("{code}: {summary} (asked by {})", inv.caller.label),
            &code,
        );
        let text = format!(
            "Approval needed ({code}): {summary}.\nAsked by {} for {}. An owner can approve or deny it; it lapses in {}.",
            inv.via_agent.as_deref().unwrap_or("a model"),
            inv.caller.label,
            words(policy.timeout)
        );
        if let Err(e) = runner.ask_approval(chat, code.clone(), text).await {
            // Nobody can see the request (an automation's own chat): it cannot be approved.
            self.expire(&code, "no owner could be asked").await;
            return Err(OpError::Refused(format!(
                "not run: {summary} needs an owner's approval, and this chat cannot ask one ({e})"
            )));
        }
        match tokio::time::timeout(policy.timeout, rx).await {
            Ok(Ok(Decision { approved: true, by })) => Ok(by),
            Ok(Ok(Decision { by, .. })) => {
                Err(OpError::Refused(format!("not run: denied by {by}")))
            }
            _ => {
                self.expire(&code, "nobody decided in time").await;
                // A decision may have raced the timeout: it counts.
                match store.approval(&code).await? {
                    Some(r) if r.state == "approved" => Ok(r.decided_by.unwrap_or_default()),
                    _ => Err(OpError::Refused(format!(
                        "not run: timed out (nobody decided within {})",
                        words(policy.timeout)
                    ))),
                }
            }
        }
    }

    /// `approve` / `deny`: an owner decides a waiting request, once.
    pub(super) async fn decide(
        &self,
        spec: &'static OpSpec,
        inv: &Invocation,
        args: Value,
        approved: bool,
    ) -> Result<Output, OpError> {
        let IdArgs { id } = parse(spec, args)?;
        let code = id.trim().to_ascii_lowercase();
        let verb = if approved { "approve" } else { "deny" };
        if inv.caller.kind != CallerKind::Owner {
            return Err(OpError::Refused(format!("only an owner can {verb} this")));
        }
        let store = &self.inner.store;
        let state = if approved { "approved" } else { "denied" };
        let Some(record) = store
            .decide_approval(&code, state, &inv.caller.label)
            .await?
        else {
            return match store.approval(&code).await? {
                None => Err(OpError::NotFound(format!("no approval request {code}"))),
                Some(r) => Ok(Output::new(
                    format!(
                        "{code} was already {} by {}.",
                        r.state,
                        r.decided_by.unwrap_or_default()
                    ),
                    json!({ "id": code, "state": r.state }),
                )),
            };
        };
        let waiter = self
            .inner
            .waiting
            .turns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&code);
        let by = inv.caller.label.clone();
        if let Some(waiter) = waiter {
            let _ = waiter.send(Decision {
                approved,
                by: by.clone(),
            });
        }
        self.note_approval(
            &format!("approval.{state}"),
            &by,
            inv.caller.role(),
            format!("{code}: {} ({state} by {by})", record.summary),
            &code,
        );
        let mark = if approved {
            "✅ Approved"
        } else {
            "❌ Denied"
        };
        let text = format!("{mark} by {by}: {}.", record.summary);
        self.tell_decided(&record, text.clone()).await;
        Ok(Output::new(text, json!({ "id": code, "state": state })))
    }

    /// Expires a request nobody decided, and tells its chat. Does nothing once decided.
    async fn expire(&self, code: &str, why: &str) {
        match self.inner.store.decide_approval(code, "expired", why).await {
            Ok(Some(record)) => {
                self.note_approval(
                    "approval.expired",
                    "system",
                    ActorRole::System,
                    format!("{code}: {} ({why})", record.summary),
                    code,
                );
                let text = format!("⌛ Not run ({why}): {}.", record.summary);
                self.tell_decided(&record, text).await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("cannot expire approval {code}: {e}"),
        }
    }

    /// Expires the requests a stopped process left waiting in chats on these channels and
    /// tells those chats: the turns that asked are gone, so none of them will ever run.
    pub async fn expire_interrupted_approvals(&self, channels: &[String]) {
        let expired = match self.inner.store.expire_pending_approvals(channels).await {
            Ok(expired) => expired,
            Err(e) => {
                tracing::error!("cannot look for interrupted approval requests: {e}");
                return;
            }
        };
        for record in expired {
            self.note_approval(
                "approval.expired",
                "system",
                ActorRole::System,
                format!("{}: {} (operator stopped)", record.code, record.summary),
                &record.code,
            );
            let text = format!(
                "⌛ Not run: operator stopped while this waited for a decision: {}. Ask again if it still matters.",
                record.summary
            );
            self.tell_decided(&record, text).await;
        }
    }

    async fn tell_decided(&self, record: &ApprovalRecord, text: String) {
        if let (Some(chat), Ok(runner)) = (record.chat.clone(), self.turn_runner()) {
            runner
                .approval_decided(chat, record.code.clone(), text)
                .await;
        }
    }

    fn note_approval(&self, kind: &str, actor: &str, role: ActorRole, summary: String, code: &str) {
        self.inner.store.record(NewActivity {
            kind: kind.to_string(),
            actor: actor.to_string(),
            role: Some(role),
            summary,
            detail: Some(json!({ "approval": code })),
            ..NewActivity::default()
        });
    }
}

impl Ops {
    /// Runs the operation, after an owner's yes where a model's call needs one; the result
    /// then says who approved it.
    pub(super) async fn approved_dispatch(
        &self,
        spec: &'static OpSpec,
        inv: &Invocation,
        args: &Value,
    ) -> Result<Output, OpError> {
        let approved_by = match self.approval_needed(spec, inv, args).await {
            Some(summary) => Some(self.wait_for_approval(spec, inv, args, summary).await?),
            None => None,
        };
        let result = match inv.progress.clone() {
            Some(sink) => {
                PROGRESS
                    .scope(sink, self.dispatch(spec, inv, args.clone()))
                    .await
            }
            None => self.dispatch(spec, inv, args.clone()).await,
        };
        match (approved_by, result) {
            (Some(by), Ok(mut out)) => {
                out.text = format!("(approved by {by}) {}", out.text);
                Ok(out)
            }
            (_, result) => result,
        }
    }
}

/// A short id people can type: six lowercase letters and digits.
fn new_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..6)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

fn words(d: Duration) -> String {
    match d.as_secs() {
        s if s % 60 == 0 && s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// What a call will do, in words: "delete instance film-1 and its workspace volume".
pub(super) fn describe(op: &str, args: &Value) -> String {
    let text = |key: &str| args.get(key).and_then(Value::as_str).unwrap_or("?");
    match op {
        "instance_delete" => {
            format!("delete instance {} and its workspace volume", text("name"))
        }
        "agent_delete" => format!("delete agent {}", text("name")),
        "secret_delete" => format!("delete secret {}", text("name")),
        "instance_move" => format!("move instance {} to host {}", text("name"), text("host")),
        "webhook_delete" => format!("delete webhook {}", text("name")),
        "automation_delete" => format!("delete automation {}", text("name")),
        "budget_set" => {
            let usd = args.get("usd").map(Value::to_string).unwrap_or_default();
            format!("set the {} spending limit to {usd} USD", text("scope"))
        }
        _ => {
            let action = op.rsplit('_').next().unwrap_or(op);
            let subject = op.split('_').next().unwrap_or(op);
            if let Some(targets) = args.get("targets").and_then(Value::as_array) {
                let names: Vec<&str> = targets.iter().filter_map(Value::as_str).collect();
                return format!("{action} {} {subject}s: {}", names.len(), names.join(", "));
            }
            if let Some(tag) = args.get("tag").and_then(Value::as_str) {
                return format!("{action} every {subject} tagged {tag}");
            }
            format!("run {op} with {args}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_put_in_words() {
        assert_eq!(
            describe("instance_delete", &json!({ "name": "film-1" })),
            "delete instance film-1 and its workspace volume"
        );
        assert_eq!(
            describe("instance_stop", &json!({ "targets": ["a", "b", "c", "d"] })),
            "stop 4 instances: a, b, c, d"
        );
        assert_eq!(
            describe("instance_restart", &json!({ "tag": "web" })),
            "restart every instance tagged web"
        );
    }

    #[test]
    fn codes_are_short_and_typeable() {
        let code = new_code();
        assert_eq!(code.len(), 6);
        assert!(
            code.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
