//! Admission: the access decision for one inbound message, and the pairing code a stranger gets.

use super::Router;
use super::access::{self, Decision, PAIRING_TTL_MS, platform_of};
use crate::channel::{Inbound, Outbound, console};
use crate::domain::Caller;
use crate::store::{NewActivity, PairingRecord};

impl Router {
    /// The access policy. It fails closed: a channel without a policy admits nobody.
    pub(super) async fn admit(&self, message: &Inbound) -> Decision {
        if message.chat.channel == console::CHANNEL_ID {
            return Decision::Admit(Caller::owner("console"));
        }
        let platform = platform_of(&message.chat.channel);
        let rules = {
            let access = self.inner.access.read().unwrap_or_else(|e| e.into_inner());
            access.get(platform).cloned()
        };
        let Some(rules) = rules else {
            return Decision::Ignore("no access rules for this channel");
        };
        let paired = if rules.needs_pairing(message) {
            match self
                .inner
                .store
                .is_paired(platform, &message.sender_id)
                .await
            {
                Ok(paired) => paired,
                Err(e) => {
                    tracing::error!("cannot read paired users: {e}");
                    return Decision::Ignore("the access check failed");
                }
            }
        } else {
            false
        };
        // A group chat an owner bound to an agent with /use talks to it without mentions.
        if message.group && !message.addressed {
            let bound = self.inner.store.binding(&message.chat).await;
            if bound.is_ok_and(|b| b.is_some()) {
                let addressed = Inbound {
                    addressed: true,
                    ..message.clone()
                };
                return rules.decide(&addressed, paired);
            }
        }
        rules.decide(message, paired)
    }

    /// A stranger's pairing code: the pending one, or a new one.
    pub(super) async fn pairing_reply(&self, message: &Inbound) -> Outbound {
        let store = &self.inner.store;
        let platform = platform_of(&message.chat.channel);
        let pending = store.pairing_of(platform, &message.sender_id).await;
        let pairing = match pending {
            Ok(Some(pairing)) => pairing,
            Ok(None) => {
                let pairing = PairingRecord {
                    platform: platform.to_string(),
                    user_id: message.sender_id.clone(),
                    name: message.sender_name.clone(),
                    chat: message.chat.to_string(),
                    code: access::pairing_code(),
                    expires_at: crate::domain::now_millis() + PAIRING_TTL_MS,
                };
                if let Err(e) = store.put_pairing(&pairing).await {
                    return Outbound::Notice(format!("I cannot start pairing right now: {e}"));
                }
                self.record(NewActivity {
                    kind: "pairing.requested".into(),
                    actor: format!("{platform}:{}", message.sender_id),
                    role: Some(crate::domain::ActorRole::User),
                    summary: format!(
                        "{} ({platform} user {}) asked to pair; code {}",
                        message.sender_name, message.sender_id, pairing.code
                    ),
                    ..NewActivity::default()
                });
                pairing
            }
            Err(e) => return Outbound::Notice(format!("I cannot start pairing right now: {e}")),
        };
        Outbound::Notice(format!(
            "I don't know you yet. Your pairing code is {}. Ask an owner of this bot to send /pair {} (the code expires within an hour).",
            pairing.code, pairing.code
        ))
    }
}
