//! The daemon's core in the test process (`app::build` on a temporary state directory), and its
//! admin listener on 127.0.0.1:0. Both are torn down when dropped.

use std::net::SocketAddr;

use operator::app::Core;
use operator::config::{SecretString, Settings};

use super::FakeLlm;

pub struct InProcess {
    pub core: Core,
    pub state: tempfile::TempDir,
}

/// A core with the LLM pointed at `llm` (if any) and no Docker engine, after `tweak`.
pub async fn core(llm: Option<&FakeLlm>, tweak: impl FnOnce(&mut Settings)) -> InProcess {
    let state = tempfile::tempdir().unwrap();
    let mut settings = Settings::defaults();
    settings.state.dir = Some(state.path().to_path_buf());
    if let Some(llm) = llm {
        settings.llm.api_key = SecretString::new("test-key");
        settings.llm.base_url = llm.base_url.clone();
    }
    settings.docker.host = "unix:///nonexistent/operator-test.sock".into();
    tweak(&mut settings);
    let core = operator::app::build(&settings, Vec::new()).await.unwrap();
    InProcess { core, state }
}

/// The admin listener of `core`, with `/api/` guarded by this token hash (or closed).
pub struct Served {
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub async fn serve(core: &Core, admin_token_hash: Option<String>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = operator::http::router(operator::app::http_state(core, admin_token_hash));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Served { addr, server }
}

/// Points `settings` at the local Docker engine with `image`, network `none` and no workstation
/// packages (the test images are busybox-based).
pub fn use_engine(settings: &mut Settings, image: &str) {
    settings.docker.host = String::new();
    settings.docker.image = image.into();
    settings.docker.packages.clear();
    settings.docker.network = "none".into();
}
