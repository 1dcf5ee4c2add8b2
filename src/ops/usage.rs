//! Usage and budgets on the control surface: `usage` (what the models cost: today, the last
//! seven days, by agent and by model) and `budget_set` (change a spending limit; an owner's own
//! command, so no approval).

use serde_json::{Value, json};

use super::{Access, OpError, OpSpec, Ops, Output, parse};
use crate::domain::now_millis;
use crate::store::UsageRow;
use crate::usage::{day_start, month_start};

pub const USAGE: OpSpec = OpSpec {
    name: "usage",
    description: "What the models cost: today and the last 7 days, by agent and by model, with the limits in force.",
    access: Access::Owner,
    command: Some("usage"),
    positional: &[],
    schema: || json!({ "type": "object", "properties": {} }),
};

pub const BUDGET_SET: OpSpec = OpSpec {
    name: "budget_set",
    description: "Set or remove a spending limit in USD: scope daily, monthly, or agent:<name> (that agent's daily limit); usd a number, or none.",
    access: Access::Owner,
    command: Some("budget_set"),
    positional: &["scope", "usd"],
    schema: || {
        json!({
            "type": "object",
            "properties": {
                "scope": { "type": "string", "description": "daily, monthly, or agent:<name>" },
                "usd": { "type": "string", "description": "the limit in US dollars, or none to remove it" }
            },
            "required": ["scope", "usd"]
        })
    },
};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetArgs {
    scope: String,
    usd: Value,
}

fn line(row: &UsageRow) -> String {
    let mark = if row.estimated { " (estimated)" } else { "" };
    format!(
        "${:.4}{mark}, {} requests, {} in / {} out tokens, {} cached",
        row.cost_usd, row.requests, row.input_tokens, row.output_tokens, row.cache_read
    )
}

impl Ops {
    fn meter(&self) -> Result<&std::sync::Arc<crate::usage::Meter>, OpError> {
        self.inner
            .meter
            .get()
            .ok_or_else(|| OpError::Failed("this process keeps no usage".into()))
    }

    pub(super) async fn usage(&self) -> Result<Output, OpError> {
        let store = &self.inner.store;
        let now = now_millis();
        let today = store.usage_since(day_start(now), "all").await?;
        let week_start = day_start(now) - 6 * 86_400_000;
        let week = store.usage_since(week_start, "all").await?;
        let agents = store.usage_since(week_start, "agent").await?;
        let models = store.usage_since(week_start, "model").await?;
        let none = UsageRow::default();
        let mut text = format!(
            "Today: {}\nLast 7 days: {}",
            line(today.first().unwrap_or(&none)),
            line(week.first().unwrap_or(&none))
        );
        if !agents.is_empty() {
            text.push_str("\nBy agent (7 days):");
            for row in &agents {
                text.push_str(&format!("\n- {}: {}", row.key, line(row)));
            }
        }
        if !models.is_empty() {
            text.push_str("\nBy model (7 days):");
            for row in &models {
                text.push_str(&format!("\n- {}: {}", row.key, line(row)));
            }
        }
        let limits = self.meter()?.limits();
        let spent_today = store.spent_since(day_start(now), None).await?;
        let spent_month = store.spent_since(month_start(now), None).await?;
        let show = |limit: Option<f64>, spent: f64| match limit {
            Some(limit) => format!("${limit:.2} (${spent:.2} spent)"),
            None => format!("none (${spent:.2} spent)"),
        };
        text.push_str(&format!(
            "\nLimits: daily {}, monthly {}",
            show(limits.daily_usd, spent_today),
            show(limits.monthly_usd, spent_month)
        ));
        for (agent, limit) in &limits.agents {
            let spent = store.spent_since(day_start(now), Some(agent)).await?;
            text.push_str(&format!(", {agent} daily {}", show(Some(*limit), spent)));
        }
        let data = json!({
            "today": today.first(),
            "week": week.first(),
            "by_agent": agents,
            "by_model": models,
            "limits": { "daily_usd": limits.daily_usd, "monthly_usd": limits.monthly_usd, "agents": limits.agents },
        });
        Ok(Output::new(text, data))
    }

    pub(super) async fn budget_set(&self, args: Value) -> Result<Output, OpError> {
        let BudgetArgs { scope, usd } = parse(&BUDGET_SET, args)?;
        let invalid = |message: String| OpError::InvalidArgs {
            op: BUDGET_SET.name,
            message,
        };
        let usd = match &usd {
            Value::Null => None,
            Value::Number(n) => n.as_f64(),
            Value::String(s) if matches!(s.trim(), "none" | "off" | "") => None,
            Value::String(s) => Some(
                s.trim()
                    .trim_start_matches('$')
                    .parse::<f64>()
                    .map_err(|_| invalid(format!("usd must be a number or none, not {s:?}")))?,
            ),
            other => {
                return Err(invalid(format!(
                    "usd must be a number or none, not {other}"
                )));
            }
        };
        if usd.is_some_and(|u| !u.is_finite() || u < 0.0) {
            return Err(invalid("usd must be zero or more".into()));
        }
        let meter = self.meter()?;
        let mut limits = meter.limits();
        let what = match scope.trim() {
            "daily" => {
                limits.daily_usd = usd;
                "the daily limit".to_string()
            }
            "monthly" => {
                limits.monthly_usd = usd;
                "the monthly limit".to_string()
            }
            other => match other.strip_prefix("agent:") {
                Some(agent) if !agent.is_empty() => {
                    self.inner.store.agent(agent).await?;
                    match usd {
                        Some(usd) => limits.agents.insert(agent.to_string(), usd),
                        None => limits.agents.remove(agent),
                    };
                    format!("{agent}'s daily limit")
                }
                _ => {
                    return Err(invalid(format!(
                        "scope must be daily, monthly or agent:<name>, not {other:?}"
                    )));
                }
            },
        };
        meter
            .set_limits(&self.inner.store, limits)
            .await
            .map_err(OpError::Failed)?;
        let text = match usd {
            Some(usd) => format!("Set {what} to ${usd:.2}."),
            None => format!("Removed {what}."),
        };
        Ok(Output::new(text, json!({ "scope": scope, "usd": usd })))
    }
}
