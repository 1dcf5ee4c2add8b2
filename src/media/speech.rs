//! Speech through an OpenAI-compatible audio API (OpenAI, or a local Whisper server speaking
//! the same routes): `POST {base_url}/audio/transcriptions` turns a voice note into text, and
//! `POST {base_url}/audio/speech` speaks a reply as Opus for a voice message.

use std::time::Duration;

use crate::config::{SpeechReply, SpeechSettings};
use crate::secrets::Redactor;

/// What a person hears when a voice note arrives and no `[speech]` is configured.
pub const NOT_SET_UP: &str = "Voice notes are not set up: set [speech] base_url (an \
    OpenAI-compatible transcription API, such as OpenAI's or a local Whisper server) and api_key \
    in the config, then send it again. Text works as always.";

/// The longest reply spoken (the APIs take about 4,096 characters).
const MAX_SPOKEN_CHARS: usize = 4000;

/// A configured speech API.
pub struct Speech {
    settings: SpeechSettings,
    http: reqwest::Client,
}

impl Speech {
    /// `None` when `[speech] base_url` is empty.
    pub fn from_settings(settings: &SpeechSettings) -> Option<Self> {
        if settings.base_url.trim().is_empty() {
            return None;
        }
        if !settings.api_key.is_empty() {
            Redactor::global().set("speech api key", settings.api_key.expose());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Self {
            settings: settings.clone(),
            http,
        })
    }

    /// Whether replies to voice notes are also spoken.
    pub fn speaks_replies(&self) -> bool {
        self.settings.reply == SpeechReply::VoiceToVoice
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.settings.base_url.trim_end_matches('/'))
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let key = self.settings.api_key.expose();
        if key.is_empty() {
            request
        } else {
            request.bearer_auth(key)
        }
    }

    /// The text of a voice note. The audio is uploaded as `voice.ogg` (Telegram and Discord
    /// voice notes are Ogg Opus; OpenAI refuses the `.opus` name) or under `name` when it is
    /// another kind of audio.
    pub async fn transcribe(&self, audio: Vec<u8>, name: &str) -> Result<String, String> {
        let lower = name.to_ascii_lowercase();
        let (file_name, mime) = if lower.ends_with(".mp3") {
            ("audio.mp3", "audio/mpeg")
        } else if lower.ends_with(".m4a") {
            ("audio.m4a", "audio/mp4")
        } else if lower.ends_with(".wav") {
            ("audio.wav", "audio/wav")
        } else {
            ("voice.ogg", "audio/ogg")
        };
        let part = reqwest::multipart::Part::bytes(audio)
            .file_name(file_name)
            .mime_str(mime)
            .map_err(|e| e.to_string())?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", self.settings.model.clone())
            .text("response_format", "json");
        let request = self
            .authorize(self.http.post(self.url("audio/transcriptions")))
            .multipart(form);
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| describe(&e))?;
        if !status.is_success() {
            return Err(refusal("transcription", status.as_u16(), &body));
        }
        let text = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["text"].as_str().map(str::to_string))
            .ok_or_else(|| "the transcription API sent no text".to_string())?;
        Ok(text.trim().to_string())
    }

    /// `text` spoken, as Ogg Opus.
    pub async fn speak(&self, text: &str) -> Result<Vec<u8>, String> {
        let input: String = text.chars().take(MAX_SPOKEN_CHARS).collect();
        let body = serde_json::json!({
            "model": self.settings.speech_model,
            "voice": self.settings.voice,
            "input": input,
            "response_format": "opus",
        });
        let request = self
            .authorize(self.http.post(self.url("audio/speech")))
            .json(&body);
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(refusal("speech", status.as_u16(), &body));
        }
        let audio = response.bytes().await.map_err(|e| describe(&e))?;
        if audio.is_empty() {
            return Err("the speech API sent no audio".into());
        }
        Ok(audio.to_vec())
    }
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot be reached"
    } else {
        "failed"
    };
    format!(
        "the speech API {what}: {}",
        Redactor::global().redact(&e.to_string())
    )
}

fn refusal(what: &str, status: u16, body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    format!(
        "the {what} API refused (HTTP {status}): {}",
        Redactor::global().redact(&message)
    )
}
