//! Voice notes: a Telegram voice message is transcribed through the configured OpenAI-compatible
//! audio API (a fake here), the transcript is the message and is shown back, and with
//! `reply = "voice_to_voice"` the reply also goes out as a voice message. Without `[speech]`, a
//! voice note gets a clear answer, never silence.

use std::time::Duration;

use serde_json::json;

use crate::support::process::stop;
use crate::support::speech::{FakeSpeech, SPOKEN};
use crate::support::telegram::FakeTelegram;
use crate::support::{FakeLlm, Vendor, World};

const WAIT: Duration = Duration::from_secs(30);
const OWNER: u64 = 111;

fn send_voice(tg: &FakeTelegram, id: &str) {
    let audio = b"OggS a voice note from the owner";
    tg.add_file(id, &format!("voice/{id}.oga"), audio);
    tg.message(
        json!({ "id": OWNER, "type": "private", "first_name": "Owner" }),
        OWNER,
        "",
        json!({ "voice": { "file_id": id, "file_unique_id": format!("u{id}"), "duration": 2,
                           "mime_type": "audio/ogg", "file_size": audio.len() } }),
    );
}

#[tokio::test]
async fn a_voice_note_is_transcribed_answered_and_spoken_back() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let speech = FakeSpeech::start("what is on my calendar today").await;
    let config = format!(
        "owners = [{OWNER}]\nstreaming = \"off\"\n\n[speech]\nbase_url = {:?}\napi_key = \"speech-canary-key\"\nreply = \"voice_to_voice\"\n",
        speech.base_url
    );
    let world = World::new(Some(&llm), &tg.config(&config));
    let daemon = world.daemon(&[]);
    send_voice(&tg, "v-1");
    let done = tg
        .wait_until(WAIT, |_| !tg.calls_of("sendVoice").is_empty())
        .await;
    let sent = tg.sent_to(OWNER as i64);
    let log = stop(daemon).await;
    assert!(done, "no voice reply: {sent:?}\n{log}");
    // What was heard is shown, then answered.
    assert!(
        sent.iter()
            .any(|s| s.contains("“what is on my calendar today”")),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"echo: what is on my calendar today".to_string()),
        "{sent:?}"
    );
    // The audio went up as voice.ogg with the model and the key.
    let asked = speech.requests("transcriptions");
    assert_eq!(asked.len(), 1);
    let (auth, body) = &asked[0];
    assert_eq!(auth, "Bearer speech-canary-key");
    let body = String::from_utf8_lossy(body);
    assert!(body.contains("filename=\"voice.ogg\""), "{body}");
    assert!(
        body.contains("whisper-1") && body.contains("OggS a voice note"),
        "{body}"
    );
    // The reply was spoken as opus and sent with sendVoice.
    let spoken = speech.requests("speech");
    let request: serde_json::Value = serde_json::from_slice(&spoken[0].1).unwrap();
    assert_eq!(request["response_format"], "opus");
    assert_eq!(request["input"], "echo: what is on my calendar today");
    let voice = &tg.calls_of("sendVoice")[0];
    assert_eq!(
        voice["voice"]["content"],
        json!(String::from_utf8_lossy(SPOKEN)),
        "{voice}"
    );
    assert!(!log.contains("speech-canary-key"), "{log}");
}

#[tokio::test]
async fn without_speech_a_voice_note_is_told_voice_is_not_set_up() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let world = World::new(
        Some(&llm),
        &tg.config(&format!("owners = [{OWNER}]\nstreaming = \"off\"\n")),
    );
    let daemon = world.daemon(&[]);
    send_voice(&tg, "v-1");
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    let log = stop(daemon).await;
    assert!(
        sent.iter()
            .any(|s| s.contains("Voice notes are not set up")),
        "{sent:?}\n{log}"
    );
    assert!(llm.completions().is_empty(), "no model was asked");
}

#[tokio::test]
async fn a_discord_voice_message_is_transcribed_and_answered() {
    use crate::support::discord::FakeDiscord;
    const DM: u64 = 5001;
    const DISCORD_OWNER: u64 = 4242;
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let discord = FakeDiscord::start().await;
    let speech = FakeSpeech::start("book the room for friday").await;
    let config = discord.config(&format!(
        "owners = [{DISCORD_OWNER}]\nstreaming = \"off\"\n\n[speech]\nbase_url = {:?}\n",
        speech.base_url
    ));
    let world = World::new(Some(&llm), &config);
    let daemon = world.daemon(&[]);
    let ready = discord.wait_until(WAIT, || discord.identifies() >= 1).await;
    assert!(ready, "{}", stop(daemon).await);
    discord.voice_message(DM, DISCORD_OWNER);
    let done = discord
        .wait_until(WAIT, || {
            discord
                .texts(DM)
                .iter()
                .any(|t| t.starts_with("echo: book the room for friday"))
        })
        .await;
    let texts = discord.texts(DM);
    let log = stop(daemon).await;
    assert!(done, "{texts:?}\n{log}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("“book the room for friday”")),
        "{texts:?}"
    );
    assert_eq!(speech.requests("transcriptions").len(), 1);
}
