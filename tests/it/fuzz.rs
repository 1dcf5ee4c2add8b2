//! Bounded property tests (a few seconds each) for the parsers that take text from outside:
//! the message splitter, the chat-command parser, cron expressions with time zones. The SKILL.md
//! parser has its own next to it.

use std::time::{Duration, Instant};

use operator::channel::split_text;
use operator::domain::split_command;
use operator::ops::Ops;
use operator::scheduler::Schedule;

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn text(&mut self, alphabet: &[char], max: usize) -> String {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

fn budget() -> Instant {
    Instant::now() + Duration::from_secs(2)
}

#[test]
fn the_splitter_keeps_every_character_and_the_limit() {
    let alphabet: Vec<char> = "ab \n\n`é😀\t-".chars().collect();
    let mut g = Gen(0x1234_5678_9abc_def1);
    let deadline = budget();
    let mut cases = 0;
    while Instant::now() < deadline && cases < 50_000 {
        cases += 1;
        let text = g.text(&alphabet, 300);
        let limit = 1 + g.below(60);
        let parts = split_text(&text, limit);
        assert_eq!(
            parts.concat(),
            text,
            "nothing lost or added (limit {limit})"
        );
        assert!(
            parts.iter().all(|p| p.chars().count() <= limit),
            "{parts:?} over {limit}"
        );
    }
    assert!(cases > 100);
}

#[test]
fn the_command_parser_never_panics_and_agrees_with_itself() {
    let alphabet: Vec<char> = "/@ aguseinbtp_ \n\té".chars().collect();
    let mut g = Gen(0x0bad_cafe_dead_beef);
    let deadline = budget();
    let mut cases = 0;
    while Instant::now() < deadline && cases < 50_000 {
        cases += 1;
        let text = g.text(&alphabet, 40);
        if let Some((command, rest)) = split_command(&text) {
            assert!(
                !command.is_empty()
                    && !command.contains('@')
                    && !command.contains(char::is_whitespace)
            );
            assert!(text.contains(rest));
        }
        if let Some((spec, args)) = Ops::parse_command(&text) {
            assert_eq!(
                Some(spec.command.unwrap()),
                split_command(&text).map(|(c, _)| c)
            );
            assert!(args.is_object());
        }
    }
    assert!(cases > 100);
}

#[test]
fn cron_parsing_never_panics_and_next_runs_move_forward() {
    let alphabet: Vec<char> = "0123456789*/,- @dailyhourMONFRI?LW#".chars().collect();
    let zones = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Nowhere/X",
    ];
    let mut g = Gen(0x5eed_5eed_5eed_5eed);
    let deadline = budget();
    let (mut cases, mut valid) = (0, 0);
    while Instant::now() < deadline && cases < 5_000 {
        cases += 1;
        let fields = 1 + g.below(6);
        let expr: Vec<String> = (0..fields).map(|_| g.text(&alphabet, 4)).collect();
        let expr = expr.join(" ");
        let zone = zones[g.below(zones.len())];
        if let Ok(schedule) = Schedule::parse(&expr, zone) {
            valid += 1;
            let start = 1_780_000_000_000 + (g.next() % 31_536_000_000) as i64;
            let runs = schedule.upcoming(start, 3);
            let times: Vec<i64> = runs.iter().map(|t| t.timestamp_millis()).collect();
            assert!(
                times.windows(2).all(|w| w[0] < w[1]),
                "{expr} in {zone}: {times:?}"
            );
            assert!(times.first().is_none_or(|t| *t > start), "{expr} in {zone}");
        }
    }
    // Known-good expressions are part of every run, so some cases are always valid.
    for expr in ["*/7 * * * *", "0 0 29 2 *", "@weekly", "15 3 * * 1-5"] {
        assert!(Schedule::parse(expr, "Europe/Berlin").is_ok(), "{expr}");
        valid += 1;
    }
    assert!(cases > 100 && valid > 0);
}
