//! Prompt caching, from the requests themselves: a 30-turn conversation through `operator chat`
//! against the fake Anthropic server, then, for each request, how much of its input repeats the
//! previous request up to its cache breakpoints (what the provider reads from its cache) and
//! what the input costs with and without caching at Claude Sonnet prices ($3 / Mtok input,
//! $0.30 cache read, $3.75 cache write). Tokens are estimated at four characters each.
//!
//! Run with `cargo bench --bench caching`.

#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;

use std::io::Write;
use std::process::{Command, Stdio};

use llm::{FakeLlm, Vendor};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_operator");
const TURNS: usize = 30;
const INPUT: f64 = 3.0;
const CACHE_READ: f64 = 0.30;
const CACHE_WRITE: f64 = 3.75;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// A request's parts without their cache markers, as text: system, tools, each message.
fn parts(body: &Value) -> (String, String, Vec<String>) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        strip_cache(&mut v);
        v.to_string()
    };
    let messages = body["messages"]
        .as_array()
        .map(|m| m.iter().map(strip).collect())
        .unwrap_or_default();
    (strip(&body["system"]), strip(&body["tools"]), messages)
}

fn strip_cache(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("cache_control");
            map.values_mut().for_each(strip_cache);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_cache),
        _ => {}
    }
}

fn tokens(text: &str) -> f64 {
    text.len() as f64 / 4.0
}

async fn run() {
    let llm = FakeLlm::start(Vendor::Anthropic).await;
    for i in 0..TURNS {
        llm.reply_text(&format!(
            "Answer {i}: here is a reply of ordinary length, with a few details about the fleet \
             and what was done, as an agent would write it after some work."
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("operator.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = {:?}\n[llm]\nprovider = \"anthropic\"\nbase_url = {:?}\napi_key = \"k\"\n\
             model = \"claude-sonnet-4\"\n[docker]\nhost = \"unix:///nonexistent.sock\"\n",
            dir.path().join("state").display().to_string(),
            llm.base_url
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["chat", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..TURNS {
            writeln!(
                stdin,
                "question {i}: how are the instances doing, and what changed?"
            )
            .unwrap();
        }
    }
    let _ = child.wait();
    let requests = llm.completions();
    let (mut total, mut cached) = (0.0, 0.0);
    let (mut without, mut with) = (0.0, 0.0);
    let mut previous: Option<(String, String, Vec<String>)> = None;
    for request in &requests {
        let (system, tools, messages) = parts(&request.body);
        let all =
            tokens(&system) + tokens(&tools) + messages.iter().map(|m| tokens(m)).sum::<f64>();
        // The provider reads from its cache the longest prefix the previous request ended its
        // breakpoints on: system, tools, then every message it had, unchanged.
        let hit = match &previous {
            Some((ps, pt, pm)) if *ps == system && *pt == tools => {
                let same = pm
                    .iter()
                    .zip(messages.iter())
                    .take_while(|(a, b)| a == b)
                    .count();
                tokens(&system)
                    + tokens(&tools)
                    + messages[..same].iter().map(|m| tokens(m)).sum::<f64>()
            }
            _ => 0.0,
        };
        total += all;
        cached += hit;
        without += all * INPUT / 1e6;
        with += (hit * CACHE_READ + (all - hit) * CACHE_WRITE) / 1e6;
        previous = Some((system, tools, messages));
    }
    println!("| figure | value |");
    println!("|---|---|");
    println!("| requests ({TURNS} turns) | {} |", requests.len());
    println!("| input tokens sent (estimated) | {total:.0} |");
    println!(
        "| share read from the cache (prefix up to the previous breakpoints) | {:.1}% |",
        cached / total.max(1.0) * 100.0
    );
    println!("| input cost without caching (Sonnet prices) | ${without:.4} |");
    println!(
        "| input cost with caching | ${with:.4} ({:.0}% of it) |",
        with / without.max(1e-12) * 100.0
    );
}
