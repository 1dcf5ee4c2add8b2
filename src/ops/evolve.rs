//! Build, test, evolve. `agent_evaluate` runs each case as a fresh conversation of a throwaway
//! agent (the agent's persona and model) on a throwaway clone of its instance and scores the
//! reply: text that must appear, a regular expression, or a command whose exit code decides,
//! run in the clone after the turn. `agent_variants` makes agents with one setting changed, each
//! on a clone of the parent's instance, and evaluates them on the parent's cases;
//! `agent_promote` applies a variant's settings to its parent and removes every variant. Every
//! clone and variant made by a call that fails or is cancelled is removed.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::throwaway::Throwaway;
use super::{Access, Invocation, OpError, OpSpec, Ops, Output};
use crate::domain::{AgentName, Caller, ChatRef};
use crate::instance::ExecRequest;
use crate::store::{Agent, AgentPatch, Evaluation};

/// The channel of evaluation conversations; it shows nothing.
pub const EVALUATE_CHANNEL: &str = "evaluate";
/// Variants evaluated at once (each case clones an instance and runs a turn).
const AT_ONCE: usize = 2;
const MAX_CASES: usize = 20;
const MAX_VARIANTS: usize = 5;

pub const EVALUATE: OpSpec = OpSpec::tool(
    "agent_evaluate",
    "Evaluate an agent: each case runs as a fresh conversation on a throwaway clone of the \
     agent's instance. expect is text that must appear in the reply, {\"regex\": \"...\"}, or \
     {\"command\": \"...\"} run in the clone afterwards (exit code 0 passes). Without cases, the \
     agent's last cases are run again. Returns a table and keeps it as the latest evaluation.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "agent": { "type": "string" },
                "cases": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "prompt": { "type": "string" },
                        "expect": {}
                    },
                    "required": ["prompt", "expect"]
                } }
            },
            "required": ["agent"]
        })
    },
);

pub const VARIANTS: OpSpec = OpSpec::tool(
    "agent_variants",
    "Make variants of an agent, each with one setting changed, evaluate each on the agent's \
     latest evaluation cases, and rank them. change is {\"persona\": [..]} or {\"model\": [..]}: \
     the n-th variant takes the n-th value. Promote the winner with agent_promote.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "agent": { "type": "string" },
                "count": { "type": "integer", "description": "at most this many variants (default: one per value, at most 5)" },
                "change": { "type": "object" }
            },
            "required": ["agent", "change"]
        })
    },
);

pub const PROMOTE: OpSpec = OpSpec::tool(
    "agent_promote",
    "Apply a variant's settings (persona, model) to the agent it was made from, and remove \
     every variant of that agent with its instance.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "variant": { "type": "string" } },
            "required": ["variant"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EvaluateArgs {
    agent: String,
    cases: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VariantsArgs {
    agent: String,
    count: Option<usize>,
    change: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromoteArgs {
    variant: String,
}

/// What decides a case.
#[derive(Debug, Clone)]
enum Expect {
    Contains(String),
    Regex(regex_lite::Regex),
    Command(String),
}

#[derive(Debug, Clone)]
struct Case {
    prompt: String,
    expect: Expect,
}

fn invalid(op: &'static str, message: impl Into<String>) -> OpError {
    OpError::InvalidArgs {
        op,
        message: message.into(),
    }
}

fn parse_cases(op: &'static str, raw: &[Value]) -> Result<Vec<Case>, OpError> {
    if raw.is_empty() || raw.len() > MAX_CASES {
        return Err(invalid(op, format!("give 1 to {MAX_CASES} cases")));
    }
    raw.iter()
        .enumerate()
        .map(|(i, c)| {
            let n = i + 1;
            let prompt = c["prompt"]
                .as_str()
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| invalid(op, format!("case {n} needs a prompt")))?;
            let expect = match &c["expect"] {
                Value::String(text) if !text.trim().is_empty() => Expect::Contains(text.clone()),
                Value::Object(o) if o.len() == 1 => match o.iter().next() {
                    Some((k, Value::String(v))) if k == "contains" => Expect::Contains(v.clone()),
                    Some((k, Value::String(v))) if k == "regex" => {
                        Expect::Regex(regex_lite::Regex::new(v).map_err(|e| {
                            invalid(op, format!("case {n}: the regex does not compile: {e}"))
                        })?)
                    }
                    Some((k, Value::String(v))) if k == "command" => Expect::Command(v.clone()),
                    _ => {
                        return Err(invalid(
                            op,
                            format!(
                                "case {n}: expect is text, {{\"regex\": ..}} or {{\"command\": ..}}"
                            ),
                        ));
                    }
                },
                _ => {
                    return Err(invalid(
                        op,
                        format!(
                            "case {n}: expect is text, {{\"regex\": ..}} or {{\"command\": ..}}"
                        ),
                    ));
                }
            };
            Ok(Case {
                prompt: prompt.to_string(),
                expect,
            })
        })
        .collect()
}

/// One case's result.
struct Scored {
    passed: bool,
    ms: u128,
    tokens: i64,
    why: String,
}

impl Ops {
    /// Runs one case on a clone of `instance`, as a throwaway agent with `agent`'s settings.
    async fn run_case(
        &self,
        caller: &Caller,
        agent: &Agent,
        instance: &str,
        case: &Case,
    ) -> Scored {
        let clone = format!("eval-{:08x}", rand::random::<u32>());
        let mut made = Throwaway::new(self);
        let started = Instant::now();
        let since = crate::domain::now_millis();
        let outcome = async {
            let turns = self.turn_runner()?;
            super::instance_admin::clone_instance(self, instance, &clone).await?;
            made.add(clone.clone());
            let name = AgentName::parse(&clone).map_err(|e| OpError::Failed(e.to_string()))?;
            self.store()
                .create_agent(&name, &agent.persona, agent.model.as_deref())
                .await?;
            self.store()
                .set_instance_agent(&clone, Some(&clone))
                .await?;
            let chat = ChatRef::new(EVALUATE_CHANNEL, &clone);
            let (ok, summary) = turns
                .run_turn(
                    chat.clone(),
                    clone.clone(),
                    caller.clone(),
                    case.prompt.clone(),
                )
                .await;
            let reply = self.reply_in(&chat, &clone).await.unwrap_or(summary);
            let (passed, why) = match &case.expect {
                _ if !ok => (false, format!("the turn failed: {reply}")),
                Expect::Contains(text) => (
                    reply.to_lowercase().contains(&text.to_lowercase()),
                    format!("reply: {}", first_chars(&reply, 80)),
                ),
                Expect::Regex(re) => (
                    re.is_match(&reply),
                    format!("reply: {}", first_chars(&reply, 80)),
                ),
                Expect::Command(command) => {
                    let out = self
                        .instances()
                        .exec(
                            &clone,
                            ExecRequest {
                                command: command.clone(),
                                env: Vec::new(),
                                timeout: Duration::from_secs(120),
                                output_cap: 2048,
                                stdin: None,
                                on_output: None,
                            },
                        )
                        .await?;
                    let code = out.exit_code.map_or("none".to_string(), |c| c.to_string());
                    (
                        out.exit_code == Some(0),
                        format!("exit {code}: {}", first_chars(out.output.trim(), 80)),
                    )
                }
            };
            Ok::<_, OpError>((passed, why))
        }
        .await;
        let tokens = self
            .store()
            .usage_since(since, "agent")
            .await
            .ok()
            .and_then(|rows| rows.into_iter().find(|r| r.key == clone))
            .map_or(0, |r| r.input_tokens + r.output_tokens);
        let ms = started.elapsed().as_millis();
        made.remove().await;
        match outcome {
            Ok((passed, why)) => Scored {
                passed,
                ms,
                tokens,
                why,
            },
            Err(e) => Scored {
                passed: false,
                ms,
                tokens,
                why: format!("could not run: {e}"),
            },
        }
    }

    /// The last reply of `agent` in `chat`.
    async fn reply_in(&self, chat: &ChatRef, agent: &str) -> Option<String> {
        let store = self.store();
        let conversation = store.open_conversation(chat, agent).await.ok()?;
        let messages = store.messages_after(conversation.id, 0).await.ok()?;
        messages
            .iter()
            .rev()
            .find(|m| m.role == crate::domain::Role::Assistant && m.tool_calls.is_empty())
            .map(|m| m.content.clone())
    }

    /// Evaluates `agent` on `cases` (in order) and keeps the result as its latest evaluation.
    async fn evaluate_agent(
        &self,
        caller: &Caller,
        agent: &Agent,
        raw: &[Value],
        cases: &[Case],
    ) -> Result<Evaluation, OpError> {
        let instance = self
            .store()
            .instance_of_agent(&agent.name)
            .await?
            .ok_or_else(|| {
                OpError::Failed(format!(
                    "agent {} has no instance to clone; evaluations run on instances",
                    agent.name
                ))
            })?;
        let mut results = Vec::new();
        let mut passed = 0;
        for (i, case) in cases.iter().enumerate() {
            let s = self.run_case(caller, agent, &instance.name, case).await;
            passed += i64::from(s.passed);
            results.push(json!({
                "case": i + 1, "prompt": case.prompt, "passed": s.passed,
                "ms": s.ms as u64, "tokens": s.tokens, "detail": s.why,
            }));
        }
        let evaluation = Evaluation {
            agent: agent.name.clone(),
            cases: Value::Array(raw.to_vec()),
            results: Value::Array(results),
            passed,
            total: cases.len() as i64,
            created_at: crate::domain::now_millis(),
        };
        self.store().save_evaluation(&evaluation).await?;
        Ok(evaluation)
    }

    pub(super) async fn agent_evaluate(
        &self,
        inv: &Invocation,
        args: EvaluateArgs,
    ) -> Result<Output, OpError> {
        let agent = self.store().agent(args.agent.trim()).await?;
        let raw = match args.cases {
            Some(cases) => cases,
            None => match self.store().evaluation(&agent.name).await? {
                Some(last) => last.cases.as_array().cloned().unwrap_or_default(),
                None => {
                    return Err(invalid(
                        EVALUATE.name,
                        format!("{} has no earlier cases; give cases", agent.name),
                    ));
                }
            },
        };
        let cases = parse_cases(EVALUATE.name, &raw)?;
        let e = self
            .evaluate_agent(&inv.caller, &agent, &raw, &cases)
            .await?;
        let mut text = format!(
            "Evaluation of {}: {}/{} passed.\ncase | result | time | tokens | detail",
            agent.name, e.passed, e.total
        );
        for r in e.results.as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\n{} | {} | {:.1} s | {} | {}",
                r["case"],
                if r["passed"] == true { "pass" } else { "FAIL" },
                r["ms"].as_f64().unwrap_or_default() / 1000.0,
                r["tokens"],
                r["detail"].as_str().unwrap_or_default()
            ));
        }
        Ok(Output::new(
            text,
            json!({ "agent": agent.name, "passed": e.passed, "total": e.total, "results": e.results }),
        ))
    }

    pub(super) async fn agent_variants(
        &self,
        inv: &Invocation,
        args: VariantsArgs,
    ) -> Result<Output, OpError> {
        let op = VARIANTS.name;
        let parent = self.store().agent(args.agent.trim()).await?;
        let last = self
            .store()
            .evaluation(&parent.name)
            .await?
            .ok_or_else(|| {
                invalid(
                    op,
                    format!("evaluate {} first (agent_evaluate with cases)", parent.name),
                )
            })?;
        let raw = last.cases.as_array().cloned().unwrap_or_default();
        let cases = parse_cases(op, &raw)?;
        let (field, values) = match args
            .change
            .as_object()
            .map(|o| o.iter().collect::<Vec<_>>())
        {
            Some(fields)
                if fields.len() == 1 && matches!(fields[0].0.as_str(), "persona" | "model") =>
            {
                let values: Vec<String> = match fields[0].1 {
                    Value::String(v) => vec![v.clone()],
                    Value::Array(vs) => vs
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                (fields[0].0.clone(), values)
            }
            _ => {
                return Err(invalid(
                    op,
                    "change is {\"persona\": [..]} or {\"model\": [..]} (runtimes and skill versions are not variant settings yet)",
                ));
            }
        };
        let count = args
            .count
            .unwrap_or(values.len())
            .min(values.len())
            .min(MAX_VARIANTS);
        if count == 0 {
            return Err(invalid(op, "give at least one value to change"));
        }
        let instance = self
            .store()
            .instance_of_agent(&parent.name)
            .await?
            .ok_or_else(|| OpError::Failed(format!("agent {} has no instance", parent.name)))?;
        // Made here, removed by the guard if anything below fails or the call is dropped.
        let mut made = Throwaway::new(self);
        let mut variants = Vec::new();
        for value in values.into_iter().take(count) {
            let stem: String = parent.name.chars().take(24).collect();
            let name = format!("{stem}-v{:04x}", rand::random::<u16>());
            super::instance_admin::clone_instance(self, &instance.name, &name).await?;
            made.add(name.clone());
            let agent_name = AgentName::parse(&name).map_err(|e| OpError::Failed(e.to_string()))?;
            let (persona, model) = match field.as_str() {
                "persona" => (value.clone(), parent.model.clone()),
                _ => (parent.persona.clone(), Some(value.clone())),
            };
            let agent = self
                .store()
                .create_agent(&agent_name, &persona, model.as_deref())
                .await?;
            self.store().set_instance_agent(&name, Some(&name)).await?;
            let change = json!({ field.clone(): value });
            self.store()
                .add_variant(&name, &parent.name, &change)
                .await?;
            variants.push((agent, change));
        }
        // Owned values in each future: a stream of borrowing futures is not `Send` for every
        // lifetime, which the daemon's spawned tasks need.
        let evaluated: Vec<_> = futures_util::stream::iter(variants)
            .map(|(agent, change)| {
                let (ops, caller, raw, cases) =
                    (self.clone(), inv.caller.clone(), raw.clone(), cases.clone());
                async move {
                    let e = ops.evaluate_agent(&caller, &agent, &raw, &cases).await;
                    (agent.name, change, e)
                }
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        let mut ranked = Vec::new();
        for (name, change, e) in evaluated {
            let e = e?;
            let (ms, tokens) =
                e.results
                    .as_array()
                    .into_iter()
                    .flatten()
                    .fold((0, 0), |(ms, t), r| {
                        (
                            ms + r["ms"].as_u64().unwrap_or(0),
                            t + r["tokens"].as_i64().unwrap_or(0),
                        )
                    });
            ranked.push((name, change, e.passed, e.total, ms, tokens));
        }
        ranked.sort_by(|a, b| b.2.cmp(&a.2).then(a.4.cmp(&b.4)));
        made.keep();
        let mut text = format!(
            "Variants of {} ({} now passes {}/{}), best first:\nrank | variant | change | passed | time | tokens",
            parent.name, parent.name, last.passed, last.total
        );
        for (i, (name, change, passed, total, ms, tokens)) in ranked.iter().enumerate() {
            text.push_str(&format!(
                "\n{} | {name} | {} | {passed}/{total} | {:.1} s | {tokens}",
                i + 1,
                first_chars(&change.to_string(), 60),
                *ms as f64 / 1000.0
            ));
        }
        text.push_str("\nPromote one with agent_promote, which also removes the others.");
        let data: Vec<Value> = ranked
            .iter()
            .map(|(name, change, passed, total, ms, tokens)| {
                json!({ "variant": name, "change": change, "passed": passed, "total": total, "ms": ms, "tokens": tokens })
            })
            .collect();
        Ok(Output::new(
            text,
            json!({ "agent": parent.name, "ranked": data }),
        ))
    }

    pub(super) async fn agent_promote(&self, args: PromoteArgs) -> Result<Output, OpError> {
        let variant = self.store().variant(args.variant.trim()).await?;
        let winner = self.store().agent(&variant.name).await?;
        let patch = AgentPatch {
            persona: Some(winner.persona.clone()),
            model: Some(winner.model.clone()),
            ..AgentPatch::default()
        };
        self.store().update_agent(&variant.parent, &patch).await?;
        let all: Vec<String> = self
            .store()
            .variants_of(&variant.parent)
            .await?
            .into_iter()
            .map(|v| v.name)
            .collect();
        let removed = all.len();
        let mut cleanup = Throwaway::new(self);
        for name in all {
            cleanup.add(name);
        }
        cleanup.remove().await;
        Ok(Output::new(
            format!(
                "Promoted {} to {}: {} now has its {}. Removed {removed} variant(s) and their instances.",
                variant.name,
                variant.parent,
                variant.parent,
                variant
                    .change
                    .as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .unwrap_or_default()
            ),
            json!({ "agent": variant.parent, "variant": variant.name, "change": variant.change, "removed": removed }),
        ))
    }
}

fn first_chars(text: &str, n: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(n).collect();
    if line.chars().count() > n || text.lines().count() > 1 {
        out.push('…');
    }
    out
}
