//! For the benches that measure a turn in process: a router over a store in a given state
//! directory, a model that answers at once, and a channel that reports each turn's end.

// Each bench uses some of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use operator::agent::llm::{BoxFuture, ChatRequest, ChatResponse, LlmError, LlmProvider};
use operator::agent::{Limits, Runner};
use operator::channel::{
    Capabilities, Channel, ChannelError, Health, Inbound, InboundTx, Outbound,
};
use operator::config::{QueueMode, Settings};
use operator::domain::ChatRef;
use operator::instance::{DockerBackend, InstanceDefaults};
use operator::ops::{Ops, SystemInfo};
use operator::router::Router;
use operator::store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A model that answers at once.
struct Instant0;

impl LlmProvider for Instant0 {
    fn describe(&self) -> String {
        "zero-latency".into()
    }
    fn complete<'a>(
        &'a self,
        _request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async {
            Ok(ChatResponse {
                text: "ok".into(),
                ..ChatResponse::default()
            })
        })
    }
    fn probe(&self) -> BoxFuture<'_, Result<String, LlmError>> {
        Box::pin(async { Ok("ok".into()) })
    }
}

/// A channel that reports each turn's end to the benchmark.
struct Sink {
    done: mpsc::UnboundedSender<()>,
}

impl Channel for Sink {
    fn id(&self) -> &str {
        "console"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: 4096,
            can_edit: false,
            answers_are_stored: false,
        }
    }
    fn run(
        self: Arc<Self>,
        _inbound: InboundTx,
        _shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn send<'a>(
        &'a self,
        _chat: &'a ChatRef,
        message: Outbound,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if message.ends_turn() {
                let _ = self.done.send(());
            }
            Ok(())
        })
    }
    fn health(&self) -> Health {
        Health::Up
    }
}

/// A router on the state in `dir`, with the zero-latency model and the reporting channel.
pub struct Bench {
    pub store: Store,
    router: Router,
    done: mpsc::UnboundedReceiver<()>,
}

impl Bench {
    pub async fn open(dir: &std::path::Path) -> Self {
        let store = Store::open_and_migrate(dir).await.unwrap();
        let settings = Settings::defaults();
        let instance_defaults = InstanceDefaults::from_settings(&settings.docker);
        let ops = Ops::new(
            store.clone(),
            SystemInfo {
                started: Instant::now(),
                llm: Some("zero-latency".into()),
                channels: vec!["console".into()],
            },
            Arc::new(operator::instance::Fleet::single(
                "",
                Arc::new(DockerBackend::new("")),
            )),
            instance_defaults,
            Arc::new(operator::secrets::MasterKey::generate()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let limits = Limits {
            default_model: settings.llm.model.clone(),
            max_tokens: settings.llm.max_tokens,
            max_steps: settings.operator.max_steps,
            context_tokens: settings.operator.context_tokens,
            meter: Arc::new(operator::usage::Meter::new(
                settings.llm.prices.clone(),
                operator::usage::Limits::default(),
            )),
            provider: "default".to_string(),
        };
        let runner = Runner::new(store.clone(), ops.clone(), Some(Arc::new(Instant0)), limits);
        let hub = operator::channel::Hub::default();
        let (done_tx, done) = mpsc::unbounded_channel();
        hub.add(Arc::new(Sink { done: done_tx }));
        let router = Router::new(store.clone(), ops, runner, hub, QueueMode::Steer);
        Self {
            store,
            router,
            done,
        }
    }

    /// One message to `chat` (a console chat id), timed from handing it to the router until
    /// its reply reaches the channel.
    pub async fn turn(&mut self, chat: &str, text: String) -> Duration {
        let message = Inbound::direct(ChatRef::new("console", chat), "bench", "bench", text);
        let started = Instant::now();
        self.router.handle(message).await;
        self.done.recv().await.expect("a reply");
        started.elapsed()
    }

    pub async fn close(self) {
        self.router.drain().await;
        self.store.close().await;
    }
}

/// (median, p99) of the samples.
pub fn median_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}
