//! Pairing: strangers who message a bot directly get a one-time code; an owner approves it here
//! (the `/pair <code>` command, or by asking Operator), and the stranger becomes a member.

use serde::Deserialize;
use serde_json::json;

use super::{Access, Invocation, OpError, OpSpec, Ops, Output};
use crate::domain::format_millis;

pub const PAIR: OpSpec = OpSpec {
    name: "pair",
    description: "Approve a pairing code a stranger got from a bot, admitting them as a member; \
                  without a code, list the pending requests.",
    access: Access::Owner,
    command: Some("pair"),
    positional: &["code"],
    schema: || {
        json!({
            "type": "object",
            "properties": {
                "code": { "type": "string", "description": "the code the person was given" }
            }
        })
    },
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairArgs {
    code: Option<String>,
}

pub async fn pair(ops: &Ops, inv: &Invocation, args: PairArgs) -> Result<Output, OpError> {
    let code = args
        .code
        .map(|c| c.trim().to_uppercase())
        .unwrap_or_default();
    if code.is_empty() {
        let pending = ops.store().list_pairings().await?;
        if pending.is_empty() {
            return Ok(Output::new("No pairing requests are waiting.", json!([])));
        }
        let mut text = String::from("Waiting for approval:");
        let mut data = Vec::new();
        for p in &pending {
            text.push_str(&format!(
                "\n- {} ({} user {}): code {}, expires {}",
                p.name,
                p.platform,
                p.user_id,
                p.code,
                format_millis(p.expires_at)
            ));
            data.push(json!({ "platform": p.platform, "user_id": p.user_id, "name": p.name, "code": p.code }));
        }
        return Ok(Output::new(text, json!(data)));
    }
    let pairing = ops
        .store()
        .approve_pairing(&code, &inv.caller.label)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => OpError::NotFound(format!(
                "no pending pairing has the code {code} (codes expire after an hour)"
            )),
            other => other.into(),
        })?;
    ops.store().record(crate::store::NewActivity {
        kind: "pairing.approved".into(),
        actor: inv.caller.label.clone(),
        role: Some(inv.caller.role()),
        summary: format!(
            "{} ({} user {}) was paired",
            pairing.name, pairing.platform, pairing.user_id
        ),
        ..Default::default()
    });
    Ok(Output::new(
        format!(
            "Paired {} ({} user {}): their messages are answered now.",
            pairing.name, pairing.platform, pairing.user_id
        ),
        json!({ "platform": pairing.platform, "user_id": pairing.user_id, "name": pairing.name }),
    ))
}
