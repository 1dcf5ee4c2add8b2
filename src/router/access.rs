//! The access policy for chat platforms: owners, direct-message policy (pairing, allowlist,
//! open, disabled), group policy and the mention rule. It fails closed: a platform without
//! rules admits nobody, an empty allowlist admits nobody, and a rejected sender never reaches a
//! model.

use crate::channel::Inbound;
use crate::config::{DmPolicy, GroupPolicy};
use crate::domain::Caller;

/// How long a pairing code stays valid.
pub const PAIRING_TTL_MS: i64 = 60 * 60 * 1000;

/// One platform's rules, from its config section.
#[derive(Debug, Clone)]
pub struct AccessRules {
    /// User ids with full control.
    pub owners: Vec<String>,
    pub dm: DmPolicy,
    pub group: GroupPolicy,
    /// In groups, only messages addressed to the bot count (a chat bound with `/use` is
    /// addressed as a whole).
    pub require_mention: bool,
    /// User ids admitted in direct messages under `allowlist` (and without pairing).
    pub allow_users: Vec<String>,
    /// Group chat ids admitted under `allowlist`.
    pub allow_groups: Vec<String>,
    /// Servers (Discord guilds) whose every channel is admitted under `allowlist`.
    pub allow_spaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Admit(Caller),
    /// A stranger in a direct message under `pairing`: answer with a pairing code.
    Pair,
    /// Dropped without an answer, for this reason (recorded in the activity feed).
    Ignore(&'static str),
}

/// The platform part of a channel id: `telegram` for `telegram:123`.
pub fn platform_of(channel: &str) -> &str {
    channel.split(':').next().unwrap_or(channel)
}

impl AccessRules {
    /// Decides about one message; `paired` tells whether an owner approved the sender.
    /// Whether [`decide`](Self::decide) can depend on the sender being paired: a direct message
    /// from someone who is neither an owner nor on the allowlist, under a policy that admits
    /// paired senders. Otherwise the store need not be asked.
    pub fn needs_pairing(&self, message: &Inbound) -> bool {
        !message.group
            && matches!(self.dm, DmPolicy::Allowlist | DmPolicy::Pairing)
            && !self.owners.contains(&message.sender_id)
            && !self.allow_users.contains(&message.sender_id)
    }

    pub fn decide(&self, message: &Inbound, paired: bool) -> Decision {
        let platform = platform_of(&message.chat.channel);
        let label = format!("{platform}:{}", message.sender_id);
        let owner = self.owners.contains(&message.sender_id);
        if message.group {
            if self.require_mention && !message.addressed {
                return Decision::Ignore("a group message not addressed to the bot");
            }
            if owner {
                return Decision::Admit(Caller::owner(label));
            }
            return match self.group {
                GroupPolicy::Disabled => Decision::Ignore("groups are disabled"),
                GroupPolicy::Open => Decision::Admit(Caller::member(label)),
                GroupPolicy::Allowlist
                    if self.allow_groups.contains(&message.chat.chat_id)
                        || (!message.space.is_empty()
                            && self.allow_spaces.contains(&message.space)) =>
                {
                    Decision::Admit(Caller::member(label))
                }
                GroupPolicy::Allowlist => Decision::Ignore("a group not on the allowlist"),
            };
        }
        if owner {
            return Decision::Admit(Caller::owner(label));
        }
        let listed = paired || self.allow_users.contains(&message.sender_id);
        match self.dm {
            DmPolicy::Disabled => Decision::Ignore("direct messages are disabled"),
            DmPolicy::Open => Decision::Admit(Caller::member(label)),
            DmPolicy::Allowlist | DmPolicy::Pairing if listed => {
                Decision::Admit(Caller::member(label))
            }
            DmPolicy::Allowlist => Decision::Ignore("a sender not on the allowlist"),
            DmPolicy::Pairing => Decision::Pair,
        }
    }
}

/// A fresh pairing code: eight characters from an alphabet without look-alikes.
pub fn pairing_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CallerKind, ChatRef};

    fn rules() -> AccessRules {
        AccessRules {
            owners: vec!["1".into()],
            dm: DmPolicy::Pairing,
            group: GroupPolicy::Allowlist,
            require_mention: true,
            allow_users: vec![],
            allow_groups: vec!["-100".into()],
            allow_spaces: vec![],
        }
    }

    fn dm(sender: &str) -> Inbound {
        Inbound::direct(ChatRef::new("telegram:9", sender), sender, "x", "hi")
    }

    fn group(sender: &str, chat: &str, addressed: bool) -> Inbound {
        Inbound {
            group: true,
            addressed,
            ..Inbound::direct(ChatRef::new("telegram:9", chat), sender, "x", "hi")
        }
    }

    #[test]
    fn owners_strangers_and_paired_users_in_direct_messages() {
        let r = rules();
        let owner = r.decide(&dm("1"), false);
        assert!(
            matches!(owner, Decision::Admit(c) if c.kind == CallerKind::Owner && c.label == "telegram:1")
        );
        assert_eq!(r.decide(&dm("2"), false), Decision::Pair);
        assert!(
            matches!(r.decide(&dm("2"), true), Decision::Admit(c) if c.kind == CallerKind::Member)
        );
        let allowlist = AccessRules {
            dm: DmPolicy::Allowlist,
            ..rules()
        };
        assert!(matches!(
            allowlist.decide(&dm("2"), false),
            Decision::Ignore(_)
        ));
        let disabled = AccessRules {
            dm: DmPolicy::Disabled,
            ..rules()
        };
        assert!(matches!(
            disabled.decide(&dm("2"), true),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            disabled.decide(&dm("1"), false),
            Decision::Admit(_)
        ));
        // The paired-users table is asked only where the answer can change the decision.
        assert!(r.needs_pairing(&dm("2")) && allowlist.needs_pairing(&dm("2")));
        assert!(!r.needs_pairing(&dm("1")) && !disabled.needs_pairing(&dm("2")));
        assert!(!r.needs_pairing(&group("2", "-100", true)));
        let open = AccessRules {
            dm: DmPolicy::Open,
            ..rules()
        };
        assert!(!open.needs_pairing(&dm("2")));
    }

    #[test]
    fn groups_need_a_mention_and_the_allowlist() {
        let r = rules();
        assert!(matches!(
            r.decide(&group("2", "-100", false), false),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            r.decide(&group("2", "-100", true), false),
            Decision::Admit(_)
        ));
        assert!(matches!(
            r.decide(&group("2", "-200", true), false),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            r.decide(&group("1", "-200", true), false),
            Decision::Admit(_)
        ));
        let open = AccessRules {
            group: GroupPolicy::Open,
            require_mention: false,
            ..rules()
        };
        assert!(matches!(
            open.decide(&group("2", "-200", false), false),
            Decision::Admit(_)
        ));
        let codes: std::collections::HashSet<String> = (0..50).map(|_| pairing_code()).collect();
        assert!(codes.len() > 45 && codes.iter().all(|c| c.len() == 8));
    }
}
