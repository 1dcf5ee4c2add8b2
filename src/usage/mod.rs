//! Usage and budgets: what a model request costs at the configured prices, and whether a turn
//! may still call a model under the daemon's daily and monthly limits and an agent's own daily
//! one. Read by the turn loop before each model call and after it; set by `budget_set`.
//!
//! A model without a price of its own is never free: it is counted at the highest configured
//! price, and marked estimated. Spend is computed from the stored records (UTC days and months),
//! so limits and spend survive restarts. Knows no channel and no provider wire format.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::Deserialize;

use crate::domain::{Millis, now_millis};
use crate::store::{NewUsage, Store};

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}

/// Tokens of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// The limits in force: from `[budget]`, changed at run time by `budget_set`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    /// Per agent, a daily limit.
    pub agents: BTreeMap<String, f64>,
}

/// Prices and limits, shared by the turn loop and the control surface.
pub struct Meter {
    prices: BTreeMap<String, Price>,
    limits: RwLock<Limits>,
}

const KV_LIMITS: &str = "budget.limits";

impl Meter {
    pub fn new(prices: BTreeMap<String, Price>, limits: Limits) -> Self {
        Self {
            prices,
            limits: RwLock::new(limits),
        }
    }

    /// Takes the limits `budget_set` stored, which win over the config file.
    pub async fn load(&self, store: &Store) {
        if let Ok(Some(json)) = store.kv_get(KV_LIMITS).await
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&json)
        {
            let mut limits = self.limits();
            let usd = |key: &str| value.get(key).and_then(serde_json::Value::as_f64);
            if value.get("daily_usd").is_some() {
                limits.daily_usd = usd("daily_usd");
            }
            if value.get("monthly_usd").is_some() {
                limits.monthly_usd = usd("monthly_usd");
            }
            if let Some(agents) = value.get("agents").and_then(serde_json::Value::as_object) {
                limits.agents = agents
                    .iter()
                    .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                    .collect();
            }
            *self.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the limits and keeps them across restarts.
    pub async fn set_limits(&self, store: &Store, limits: Limits) -> Result<(), String> {
        let json = serde_json::json!({
            "daily_usd": limits.daily_usd,
            "monthly_usd": limits.monthly_usd,
            "agents": limits.agents,
        });
        store
            .kv_set(KV_LIMITS, &json.to_string())
            .await
            .map_err(|e| e.to_string())?;
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
        Ok(())
    }

    /// The price of a model: its own (exact name first, then the longest matching pattern),
    /// else the highest configured price, marked estimated.
    pub fn price(&self, model: &str) -> (Price, bool) {
        if let Some(price) = self.prices.get(model) {
            return (*price, false);
        }
        let matched = self
            .prices
            .iter()
            .filter(|(pattern, _)| glob(pattern, model))
            .max_by_key(|(pattern, _)| pattern.len());
        if let Some((_, price)) = matched {
            return (*price, false);
        }
        let highest = self.prices.values().fold(Price::default(), |a, p| Price {
            input: a.input.max(p.input),
            output: a.output.max(p.output),
            cache_read: a.cache_read.max(p.cache_read),
            cache_write: a.cache_write.max(p.cache_write),
        });
        (highest, true)
    }

    /// What a request cost, and whether that is an estimate.
    pub fn cost(&self, model: &str, tokens: Tokens) -> (f64, bool) {
        let (price, estimated) = self.price(model);
        let per = |n: u64, usd: f64| n as f64 * usd / 1_000_000.0;
        let cost = per(tokens.input, price.input)
            + per(tokens.output, price.output)
            + per(tokens.cache_read, price.cache_read)
            + per(tokens.cache_write, price.cache_write);
        (cost, estimated)
    }

    /// Records one request with its cost. Returns a warning when this request took a limit past
    /// 80% for the first time in its period (once per period, across restarts).
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        store: &Store,
        agent: &str,
        conversation_id: Option<i64>,
        source: &str,
        provider: &str,
        model: &str,
        tokens: Tokens,
    ) -> Option<String> {
        self.record_reported(
            store,
            agent,
            conversation_id,
            source,
            provider,
            model,
            tokens,
            None,
        )
        .await
    }

    /// Like [`Meter::record`], with the cost a CLI reported for itself (used as it is) when
    /// it did.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_reported(
        &self,
        store: &Store,
        agent: &str,
        conversation_id: Option<i64>,
        source: &str,
        provider: &str,
        model: &str,
        tokens: Tokens,
        reported_usd: Option<f64>,
    ) -> Option<String> {
        let (cost_usd, estimated) = match reported_usd {
            Some(usd) => (usd, false),
            None => self.cost(model, tokens),
        };
        let usage = NewUsage {
            at: now_millis(),
            agent: agent.to_string(),
            conversation_id,
            source: source.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
            input_tokens: tokens.input,
            output_tokens: tokens.output,
            cache_read: tokens.cache_read,
            cache_write: tokens.cache_write,
            cost_usd,
            estimated,
        };
        // Without a limit nothing reads the records back during the turn: the record is queued
        // and made durable with the turn's next stored message.
        if !self.limited(agent) {
            store.queue_usage(usage);
            return None;
        }
        if let Err(e) = store.record_usage(&usage).await {
            tracing::error!("cannot record model usage: {e}");
            return None;
        }
        self.warning(store, agent).await
    }

    /// Whether a spending limit applies to this agent's requests.
    fn limited(&self, agent: &str) -> bool {
        let limits = self.limits();
        [
            limits.daily_usd,
            limits.monthly_usd,
            limits.agents.get(agent).copied(),
        ]
        .into_iter()
        .any(|limit| limit.is_some_and(|l| l > 0.0))
    }

    /// The first crossing of 80% of a limit in its period, said once.
    async fn warning(&self, store: &Store, agent: &str) -> Option<String> {
        let limits = self.limits();
        let now = now_millis();
        let checks = [
            (limits.daily_usd, day_start(now), None, "daily"),
            (limits.monthly_usd, month_start(now), None, "monthly"),
            (
                limits.agents.get(agent).copied(),
                day_start(now),
                Some(agent),
                "daily",
            ),
        ];
        for (limit, since, who, period) in checks {
            let Some(limit) = limit.filter(|l| *l > 0.0) else {
                continue;
            };
            let spent = store.spent_since(since, who).await.unwrap_or(0.0);
            if spent < 0.8 * limit {
                continue;
            }
            let key = format!("budget.warned.{period}.{}", who.unwrap_or("all"));
            let said = store.kv_get(&key).await.ok().flatten();
            if said.as_deref() == Some(since.to_string().as_str()) {
                continue;
            }
            let _ = store.kv_set(&key, &since.to_string()).await;
            let whose = who.map_or("The".to_string(), |a| format!("Agent {a}'s"));
            return Some(format!(
                "{whose} {period} budget is {:.0}% spent (${spent:.2} of ${limit:.2}).",
                (spent / limit * 100.0).min(999.0)
            ));
        }
        None
    }

    /// Why `agent` may not call a model now (a limit is spent), if so: the message names the
    /// limit and how to raise it. Reads the store only when a limit is set.
    pub async fn refusal(&self, store: &Store, agent: &str) -> Option<String> {
        let limits = self.limits();
        let now = now_millis();
        let checks = [
            (limits.daily_usd, day_start(now), None, "daily", "daily_usd"),
            (
                limits.monthly_usd,
                month_start(now),
                None,
                "monthly",
                "monthly_usd",
            ),
            (
                limits.agents.get(agent).copied(),
                day_start(now),
                Some(agent),
                "daily",
                "agent_daily_usd",
            ),
        ];
        for (limit, since, who, period, key) in checks {
            let Some(limit) = limit else { continue };
            let spent = store.spent_since(since, who).await.unwrap_or(0.0);
            if spent >= limit {
                let whose = match who {
                    Some(agent) => format!("agent {agent}'s"),
                    None => "the".to_string(),
                };
                let how = match who {
                    Some(agent) => format!("/budget_set agent:{agent} <usd>"),
                    None => format!("/budget_set {period} <usd> (or [budget] {key})"),
                };
                return Some(format!(
                    "{whose} {period} budget of ${limit:.2} is spent (${spent:.2} so far); no model was called. Raise it with {how}."
                ));
            }
        }
        None
    }
}

/// Midnight UTC of the day of `now`.
pub fn day_start(now: Millis) -> Millis {
    now - now.rem_euclid(86_400_000)
}

/// The first of the month (UTC) of `now`.
pub fn month_start(now: Millis) -> Millis {
    use chrono::{Datelike, TimeZone};
    let Some(t) = chrono::Utc.timestamp_millis_opt(now).single() else {
        return day_start(now);
    };
    chrono::Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .map_or_else(|| day_start(now), |m| m.timestamp_millis())
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(after) = rest.strip_prefix(part) else {
                return false;
            };
            rest = after;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> Meter {
        let mut prices = BTreeMap::new();
        let p = |input, output| Price {
            input,
            output,
            cache_read: input / 10.0,
            cache_write: input * 1.25,
        };
        prices.insert("gpt-4o-mini".into(), p(0.15, 0.6));
        prices.insert("claude-sonnet-4*".into(), p(3.0, 15.0));
        prices.insert("claude-*".into(), p(1.0, 5.0));
        Meter::new(prices, Limits::default())
    }

    #[test]
    fn exact_names_then_the_longest_pattern_then_the_highest_price() {
        let m = meter();
        assert_eq!(m.price("gpt-4o-mini").0.input, 0.15);
        assert_eq!(m.price("claude-sonnet-4-5").0.input, 3.0);
        assert_eq!(m.price("claude-haiku-4").0.input, 1.0);
        let (unknown, estimated) = m.price("mystery-model");
        assert!(estimated);
        assert_eq!((unknown.input, unknown.output), (3.0, 15.0));
        let tokens = Tokens {
            input: 1_000_000,
            output: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(m.cost("gpt-4o-mini", tokens), (0.75, false));
        assert_eq!(m.cost("mystery-model", tokens), (18.0, true));
    }

    #[test]
    fn globs_match_runs() {
        assert!(glob("claude-*", "claude-x"));
        assert!(glob("*-mini", "gpt-4o-mini"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("gpt", "gpt-4"));
    }

    #[test]
    fn periods_start_at_utc_midnight_and_the_first() {
        // 2026-12-03 09:30 UTC.
        let now = 1_796_290_200_000;
        assert_eq!(day_start(now), 1_796_256_000_000);
        assert_eq!(month_start(now), 1_796_083_200_000);
    }
}
