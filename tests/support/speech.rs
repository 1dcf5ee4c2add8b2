//! A fake OpenAI-compatible audio API on 127.0.0.1: `POST /v1/audio/transcriptions` (multipart,
//! answered with a set transcript) and `POST /v1/audio/speech` (JSON, answered with set audio
//! bytes). Every request is recorded with its headers and raw body.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;

/// The audio the fake speaks every reply as.
pub const SPOKEN: &[u8] = b"OggS fake opus audio";

#[derive(Default)]
struct Shared {
    transcript: String,
    /// (path, authorization header, raw body)
    requests: Vec<(String, String, Vec<u8>)>,
}

pub struct FakeSpeech {
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSpeech {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn record(shared: &Mutex<Shared>, path: &str, headers: &HeaderMap, body: &[u8]) {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    shared
        .lock()
        .unwrap()
        .requests
        .push((path.to_string(), auth, body.to_vec()));
}

async fn transcribe(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    record(&shared, "transcriptions", &headers, &body);
    let text = shared.lock().unwrap().transcript.clone();
    axum::Json(json!({ "text": text }))
}

async fn speak(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    record(&shared, "speech", &headers, &body);
    ([(header::CONTENT_TYPE, "audio/ogg")], SPOKEN.to_vec())
}

impl FakeSpeech {
    pub async fn start(transcript: &str) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            transcript: transcript.to_string(),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcribe))
            .route("/v1/audio/speech", post(speak))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            shared,
            server,
        }
    }

    /// The recorded requests to one route (`transcriptions` or `speech`): (authorization,
    /// raw body).
    pub fn requests(&self, route: &str) -> Vec<(String, Vec<u8>)> {
        self.shared
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(path, _, _)| path == route)
            .map(|(_, auth, body)| (auth.clone(), body.clone()))
            .collect()
    }
}
