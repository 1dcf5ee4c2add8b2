//! Bounded property tests (a few seconds each) for the parsers that take text from outside:
//! the message splitter, the chat-command parser, cron expressions with time zones, Telegram
//! markup and UTF-16 splitting, and Telegram updates of any shape. The SKILL.md parser has its
//! own next to it.

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

    /// Up to `max - 1` words picked from `words`, run together.
    fn words(&mut self, words: &[&str], max: usize) -> String {
        (0..self.below(max))
            .map(|_| words[self.below(words.len())])
            .collect()
    }
}

/// Runs `case` with its number (from 1) until `max` cases or the time budget (2 s), whichever
/// comes first; returns how many ran.
fn for_cases(max: usize, mut case: impl FnMut(usize)) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut cases = 0;
    while Instant::now() < deadline && cases < max {
        cases += 1;
        case(cases);
    }
    cases
}

#[test]
fn the_splitter_keeps_every_character_and_the_limit() {
    let alphabet: Vec<char> = "ab \n\n`é😀\t-".chars().collect();
    let mut g = Gen(0x1234_5678_9abc_def1);
    let cases = for_cases(50_000, |_| {
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
    });
    assert!(cases > 100);
}

#[test]
fn the_command_parser_never_panics_and_agrees_with_itself() {
    let alphabet: Vec<char> = "/@ aguseinbtp_ \n\té".chars().collect();
    let mut g = Gen(0x0bad_cafe_dead_beef);
    let cases = for_cases(50_000, |_| {
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
    });
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
    let mut valid = 0;
    let cases = for_cases(5_000, |_| {
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
    });
    // Known-good expressions are part of every run, so some cases are always valid.
    for expr in ["*/7 * * * *", "0 0 29 2 *", "@weekly", "15 3 * * 1-5"] {
        assert!(Schedule::parse(expr, "Europe/Berlin").is_ok(), "{expr}");
        valid += 1;
    }
    assert!(cases > 100 && valid > 0);
}

/// Telegram HTML as Telegram checks it: only its tags, balanced; only its entities.
fn telegram_accepts(html: &str) -> Result<(), String> {
    const TAGS: [&str; 4] = ["b", "code", "pre", "a"];
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&', '>']) {
        let at = &rest[i..];
        if at.starts_with('>') {
            return Err("a bare >".into());
        }
        if at.starts_with('&') {
            let end = at.find(';').ok_or("an unterminated entity")?;
            if !["&lt", "&gt", "&amp", "&quot"].contains(&&at[..end]) {
                return Err(format!("entity {}", &at[..=end]));
            }
            rest = &at[end + 1..];
            continue;
        }
        let end = at.find('>').ok_or("an unclosed tag")?;
        let tag = &at[1..end];
        match tag.strip_prefix('/') {
            Some(name) if open.pop().as_deref() == Some(name) => {}
            Some(name) => return Err(format!("an unexpected </{name}>")),
            None => {
                let name = tag.split_whitespace().next().unwrap_or_default();
                if !TAGS.contains(&name) {
                    return Err(format!("tag <{name}>"));
                }
                open.push(name.to_string());
            }
        }
        rest = &at[end + 1..];
    }
    match open.pop() {
        Some(tag) => Err(format!("<{tag}> left open")),
        None => Ok(()),
    }
}

#[test]
fn telegram_markup_is_always_valid_and_splits_keep_the_limit() {
    use operator::channel::telegram::{MAX_MESSAGE_UNITS, split_message, to_html};
    let alphabet: Vec<char> = "ab*`[]()<>&\"\n :/httpsé😀".chars().collect();
    let mut g = Gen(0x7e1e_6a11_5eed_0001);
    let cases = for_cases(50_000, |cases| {
        let text = g.text(&alphabet, 200);
        let html = to_html(&text);
        if let Err(why) = telegram_accepts(&html) {
            panic!("{text:?} -> {html:?}: {why}");
        }
        if cases % 50 == 0 {
            let long = text.repeat(40);
            let parts = split_message(&long);
            assert!(
                parts
                    .iter()
                    .all(|p| p.encode_utf16().count() <= MAX_MESSAGE_UNITS)
            );
            if parts.len() == 1 {
                assert_eq!(parts[0], long);
            }
            // Code blocks are closed and reopened across parts; nothing else is added.
            for p in &parts {
                assert_eq!(p.matches("```").count() % 2, 0, "unbalanced part");
            }
            let plain = |s: &str| s.chars().filter(|c| *c != '`' && *c != '\n').count();
            let added: usize = parts.iter().map(|p| plain(p)).sum::<usize>() - plain(&long);
            assert!(added <= parts.len() * 24, "{added} characters added");
        }
    });
    assert!(cases > 100);
}

#[test]
fn telegram_updates_of_any_shape_never_panic_the_reader() {
    use operator::channel::telegram::{Identity, read_update};
    let me = Identity {
        channel: "telegram:42".into(),
        user_id: 42,
        username: "op_bot".into(),
    };
    let words = [
        "@op_bot",
        "@OP_BOT",
        "@op_botx",
        "/use",
        "/help@op_bot",
        "/help@other",
        "@daniel",
        "hi",
        " ",
        "\n",
        "é",
        "😀",
        "/",
        "@",
    ];
    let mut g = Gen(0x5ca1_ab1e_0000_0042);
    let cases = for_cases(20_000, |cases| {
        let text = g.words(&words, 6);
        let private = g.below(2) == 0;
        let chat = if private {
            serde_json::json!({ "id": 7, "type": "private", "first_name": "A" })
        } else {
            serde_json::json!({ "id": -1007, "type": "supergroup", "title": "G" })
        };
        let mut message = serde_json::json!({
            "message_id": g.below(1000), "date": 1, "chat": chat,
            "from": { "id": 7, "is_bot": g.below(8) == 0, "first_name": "A" },
            "text": text,
        });
        let mut replied_to_bot = false;
        if g.below(4) == 0 {
            replied_to_bot = g.below(2) == 0;
            message["reply_to_message"] = serde_json::json!({
                "message_id": 1, "date": 1, "chat": chat,
                "from": { "id": if replied_to_bot { 42 } else { 9 }, "is_bot": true, "first_name": "B" },
                "text": "earlier"
            });
        }
        if g.below(5) == 0 {
            message["is_topic_message"] = serde_json::json!(true);
            message["message_thread_id"] = serde_json::json!(g.below(50));
        }
        let update = serde_json::json!({ "update_id": cases, "message": message }).to_string();
        // Cut some updates short: broken JSON must be an error, never a panic.
        let json = if g.below(10) == 0 {
            let cut = g.below(update.len());
            update.chars().take(cut).collect()
        } else {
            update
        };
        if let Ok(Some(inbound)) = read_update(&me, &json) {
            assert_eq!(inbound.chat.channel, "telegram:42");
            if private {
                assert!(inbound.addressed && !inbound.group);
            }
            // In a group only a mention, a reply to the bot or a command addresses it.
            if inbound.addressed && !private {
                let lower = text.to_ascii_lowercase();
                assert!(
                    lower.contains("@op_bot")
                        || replied_to_bot
                        || text.trim_start().starts_with('/'),
                    "{text:?} was taken as addressed"
                );
            }
        }
    });
    assert!(cases > 100);
}

#[test]
fn discord_messages_of_any_shape_never_panic_the_reader() {
    use operator::channel::discord::{Identity, read_message};
    let me = Identity {
        channel: "discord:42".into(),
        user_id: 42,
    };
    let words = [
        "<@42>",
        "<@!42>",
        "<@43>",
        "@everyone",
        "/ask",
        "hi",
        " ",
        "\n",
        "é",
        "😀",
        "```",
        "<",
    ];
    let mut g = Gen(0xd15c_0bd0_0000_0042);
    let cases = for_cases(20_000, |cases| {
        let text = g.words(&words, 6);
        let guild = g.below(2) == 0;
        let author = if g.below(8) == 0 { 42 } else { 7 };
        let mut message = serde_json::json!({
            "id": (1000 + cases).to_string(), "channel_id": "55",
            "author": { "id": author.to_string(), "username": "a", "discriminator": "0",
                        "avatar": null, "global_name": null, "bot": g.below(8) == 0 },
            "content": text, "timestamp": "2026-11-29T12:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": false, "type": 0
        });
        if guild {
            message["guild_id"] = serde_json::json!("77");
        }
        let json = message.to_string();
        let json = if g.below(10) == 0 {
            let cut = g.below(json.len());
            json.chars().take(cut).collect()
        } else {
            json
        };
        if let Ok(Some(inbound)) = read_message(&me, &json) {
            assert_eq!(inbound.chat.channel, "discord:42");
            assert_ne!(inbound.sender_id, "42", "the bot's own message was taken");
            assert!(
                !inbound.text.contains("<@42>") && !inbound.text.contains("<@!42>")
                    || !inbound.addressed
            );
            if guild && inbound.addressed {
                assert!(
                    text.contains("<@42>")
                        || text.contains("<@!42>")
                        || text.trim_start().starts_with('/'),
                    "{text:?} was taken as addressed"
                );
            }
        }
    });
    assert!(cases > 100);
}
