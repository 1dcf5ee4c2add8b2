//! Streamable HTTP through the daemon's own reqwest client (rmcp's built-in client is another
//! reqwest version, a second HTTP stack in the binary). A POST is answered with JSON, with an
//! event stream, or with 202; a GET opens the server's own event stream.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::http_header::{
    EVENT_STREAM_MIME_TYPE, HEADER_LAST_EVENT_ID, HEADER_SESSION_ID, JSON_MIME_TYPE,
};
use rmcp::transport::streamable_http_client::{
    HttpStatusError, SseError, StreamableHttpClient, StreamableHttpClientTransportConfig,
    StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

use super::Handler;

/// A JSON response body larger than this is refused.
const JSON_CAP: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub(super) struct Client(reqwest::Client);

type HttpError = StreamableHttpError<reqwest::Error>;

fn is(content_type: Option<&HeaderValue>, mime: &str) -> bool {
    content_type.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(mime)
    })
}

fn request(
    builder: reqwest::RequestBuilder,
    session: Option<&str>,
    auth: Option<String>,
    headers: HashMap<HeaderName, HeaderValue>,
) -> reqwest::RequestBuilder {
    let mut builder = builder.header(
        reqwest::header::ACCEPT,
        format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
    );
    if let Some(session) = session {
        builder = builder.header(HEADER_SESSION_ID, session);
    }
    if let Some(auth) = auth {
        builder = builder.bearer_auth(auth);
    }
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder
}

fn events(response: reqwest::Response) -> BoxStream<'static, Result<Sse, SseError>> {
    SseStream::from_bytes_stream(response.bytes_stream()).boxed()
}

fn status_error(response: &reqwest::Response) -> Option<HttpError> {
    let status = response.status();
    if status.as_u16() == 429 || status.is_server_error() {
        let retry = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return Some(HttpStatusError::new(status.as_u16(), retry).into());
    }
    None
}

impl StreamableHttpClient for Client {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let builder = request(
            self.0.post(uri.as_ref()),
            session_id.as_deref(),
            auth_header,
            custom_headers,
        );
        let response = builder
            .json(&message)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if status.as_u16() == 202 || status.as_u16() == 204 {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status.as_u16() == 404 && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if let Some(e) = status_error(&response) {
            return Err(e);
        }
        let no_answer_needed = !matches!(message, ClientJsonRpcMessage::Request(_));
        let session = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .cloned();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            // A JSON-RPC error in a failed response is the server's answer to the request.
            if let Ok(error @ ServerJsonRpcMessage::Error(_)) = serde_json::from_str(&body) {
                return Ok(StreamableHttpPostResponse::Json(error, session));
            }
            let body: String = body.chars().take(500).collect();
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!("HTTP {status}: {body}"),
            )));
        }
        if is(content_type.as_ref(), EVENT_STREAM_MIME_TYPE) {
            return Ok(StreamableHttpPostResponse::Sse(events(response), session));
        }
        if is(content_type.as_ref(), JSON_MIME_TYPE) {
            let body = response
                .bytes()
                .await
                .map_err(StreamableHttpError::Client)?;
            if body.len() > JSON_CAP {
                return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: JSON_CAP });
            }
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, session)),
                Err(_) if no_answer_needed => Ok(StreamableHttpPostResponse::Accepted),
                Err(e) => Err(StreamableHttpError::Deserialize(e)),
            };
        }
        if no_answer_needed {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(
            content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        let builder = request(
            self.0.delete(uri.as_ref()),
            Some(&session_id),
            auth_header,
            custom_headers,
        );
        let response = builder.send().await.map_err(StreamableHttpError::Client)?;
        if response.status().as_u16() == 405 {
            return Ok(());
        }
        response
            .error_for_status()
            .map_err(StreamableHttpError::Client)?;
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let mut builder = request(
            self.0.get(uri.as_ref()),
            session_id.as_deref(),
            auth_header,
            custom_headers,
        );
        if let Some(id) = last_event_id {
            builder = builder.header(HEADER_LAST_EVENT_ID, id);
        }
        let response = builder.send().await.map_err(StreamableHttpError::Client)?;
        if response.status().as_u16() == 405 {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if let Some(e) = status_error(&response) {
            return Err(e);
        }
        let response = response
            .error_for_status()
            .map_err(StreamableHttpError::Client)?;
        let content_type = response.headers().get(reqwest::header::CONTENT_TYPE);
        if !is(content_type, EVENT_STREAM_MIME_TYPE) {
            return Err(StreamableHttpError::UnexpectedContentType(
                content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            ));
        }
        Ok(events(response))
    }
}

/// Connects to a server at `url`, sending `headers` (secrets already filled in) with every
/// request.
pub(super) async fn connect(
    handler: Handler,
    url: &str,
    headers: Vec<(String, String)>,
) -> Result<RunningService<RoleClient, Handler>, String> {
    let mut custom = HashMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
        custom.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).custom_headers(custom);
    let transport = StreamableHttpClientTransport::with_client(Client(client), config);
    rmcp::serve_client(handler, transport)
        .await
        .map_err(|e| format!("could not connect to {url}: {}", super::root_cause(&e)))
}
