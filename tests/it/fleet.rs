//! An in-process daemon core with instances on the real Docker engine, driven through the
//! control surface as an owner.

use serde_json::Value;

use operator::app::{self, Core};
use operator::domain::Caller;
use operator::ops::{Invocation, OpError, Output};

use crate::support::docker::{TEST_IMAGE, ensure_test_image};

pub struct Fleet {
    pub core: Core,
    pub state: tempfile::TempDir,
}

impl Fleet {
    pub async fn new() -> Self {
        Self::with_host("").await
    }

    pub async fn with_host(host: &str) -> Self {
        Self::configured(|docker| docker.host = host.to_string()).await
    }

    /// A fleet over several engines (`[[docker.hosts]]`).
    pub async fn with_hosts(hosts: Vec<operator::config::DockerHostSettings>) -> Self {
        Self::configured(|docker| docker.hosts = hosts).await
    }

    async fn configured(tweak: impl FnOnce(&mut operator::config::DockerSettings)) -> Self {
        ensure_test_image().await;
        let state = tempfile::tempdir().unwrap();
        let mut settings = operator::config::Settings::defaults();
        settings.state.dir = Some(state.path().to_path_buf());
        tweak(&mut settings.docker);
        settings.docker.image = TEST_IMAGE.to_string();
        settings.docker.packages.clear();
        settings.docker.network = "none".into();
        settings.docker.memory_mb = 256;
        settings.docker.cpus = 0.5;
        settings.docker.pids_limit = 64;
        let core = app::build(&settings, Vec::new()).await.unwrap();
        Self { core, state }
    }

    pub async fn op(&self, name: &str, args: Value) -> Result<Output, OpError> {
        self.core
            .ops
            .invoke(&Invocation::new(Caller::owner("test")), name, args)
            .await
    }

    pub async fn ok(&self, name: &str, args: Value) -> Output {
        match self.op(name, args.clone()).await {
            Ok(out) => out,
            Err(e) => panic!("{name}({args}) failed: {e}"),
        }
    }
}
