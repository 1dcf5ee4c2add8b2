//! Placement and health, with engines that never answer.

use super::*;
use crate::agent::llm::BoxFuture;
use crate::instance::{ArchiveStream, ExecOutput, ExecRequest, InstanceSpec, ProgressFn, RunState};

/// An engine that never answers.
struct Unused;

fn never<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, InstanceError>> {
    Box::pin(async { Err(InstanceError::Unreachable("unused".into())) })
}

impl InstanceBackend for Unused {
    fn engine(&self) -> BoxFuture<'_, Result<String, InstanceError>> {
        never()
    }
    fn ensure_image<'a>(
        &'a self,
        _: &'a str,
        _: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
    fn has_image<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool, InstanceError>> {
        never()
    }
    fn build_image<'a>(
        &'a self,
        _: &'a crate::instance::image::Recipe,
        _: bool,
        _: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<bool, InstanceError>> {
        never()
    }
    fn attach<'a>(
        &'a self,
        _: &'a str,
        _: String,
        _: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<crate::instance::Attached, InstanceError>> {
        never()
    }
    fn create<'a>(
        &'a self,
        _: &'a InstanceSpec,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
    fn remove<'a>(&'a self, _: &'a str, _: bool) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
    fn start<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
    fn stop<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
    fn restart<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
    fn state<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<RunState, InstanceError>> {
        never()
    }
    fn logs<'a>(&'a self, _: &'a str, _: u32) -> BoxFuture<'a, Result<String, InstanceError>> {
        never()
    }
    fn exec<'a>(
        &'a self,
        _: &'a str,
        _: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecOutput, InstanceError>> {
        never()
    }
    fn spawn<'a>(
        &'a self,
        _: &'a str,
        _: String,
        _: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
    fn managed(&self) -> BoxFuture<'_, Result<Vec<String>, InstanceError>> {
        never()
    }
    fn export_workspace<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<ArchiveStream, InstanceError>> {
        never()
    }
    fn import_workspace<'a>(
        &'a self,
        _: &'a InstanceSpec,
        _: ArchiveStream,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        never()
    }
}

fn host(name: &str, labels: &[(&str, &str)], instances: Option<u32>, memory: u64) -> HostSpec {
    HostSpec {
        name: name.into(),
        endpoint: format!("unix:///{name}.sock"),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        capacity_instances: instances,
        capacity_memory_mb: Some(memory),
    }
}

fn fleet() -> Fleet {
    Fleet::new(vec![
        (
            host("a", &[("region", "eu")], Some(2), 4096),
            Arc::new(Unused),
        ),
        (
            host("b", &[("region", "us"), ("gpu", "yes")], Some(10), 8192),
            Arc::new(Unused),
        ),
    ])
}

fn load(a: u64, b: u64) -> HashMap<String, Load> {
    HashMap::from([
        (
            "a".into(),
            Load {
                instances: a,
                memory_mb: a * 512,
            },
        ),
        (
            "b".into(),
            Load {
                instances: b,
                memory_mb: b * 512,
            },
        ),
    ])
}

#[test]
fn placement_follows_capacity_labels_and_names() {
    let fleet = fleet();
    let any = Placement::Anywhere;
    // Empty: one more would fill half of a but a tenth of b.
    assert_eq!(fleet.choose(&any, &load(0, 0), 512).unwrap(), "b");
    // a would be half full, and so would b (5 of 10): the one with fewer instances.
    assert_eq!(fleet.choose(&any, &load(0, 4), 512).unwrap(), "a");
    // a full: b, whatever its load.
    assert_eq!(fleet.choose(&any, &load(2, 9), 512).unwrap(), "b");
    let full = fleet.choose(&any, &load(2, 10), 512).unwrap_err();
    assert!(
        full.contains("a is full") && full.contains("b is full"),
        "{full}"
    );
    // Memory counts too: 4096 and 8192 MiB.
    let big = fleet.choose(&any, &load(0, 0), 9000).unwrap_err();
    assert!(big.contains("MiB left"), "{big}");
    let eu = Placement::Labels([("region".to_string(), "eu".to_string())].into());
    assert_eq!(fleet.choose(&eu, &load(1, 0), 512).unwrap(), "a");
    let gpu_eu = Placement::Labels(
        [("region", "eu"), ("gpu", "yes")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let none = fleet.choose(&gpu_eu, &load(0, 0), 512).unwrap_err();
    assert!(none.contains("gpu=yes, region=eu"), "{none}");
    let named = Placement::Host("a".into());
    assert_eq!(fleet.choose(&named, &load(1, 0), 512).unwrap(), "a");
    let missing = fleet.choose(&Placement::Host("c".into()), &load(0, 0), 512);
    assert!(missing.unwrap_err().contains("the hosts are a, b"));
}

#[tokio::test]
async fn a_host_that_does_not_answer_waits_and_is_left_out() {
    let fleet = fleet();
    let health = fleet.hosts()[1].probe().await;
    assert_eq!(health.reachable, Some(false));
    assert!(health.retry_in().is_some());
    // While it waits, calls fail at once and placement skips it.
    fleet.place("web", "b");
    let err = fleet.state("web").await.unwrap_err();
    assert!(err.to_string().contains("tried again in"), "{err}");
    assert_eq!(
        fleet
            .choose(&Placement::Anywhere, &load(0, 0), 512)
            .unwrap(),
        "a"
    );
    // The change is news once.
    assert_eq!(fleet.hosts()[1].changed(), Some(false));
    assert_eq!(fleet.hosts()[1].changed(), None);
    assert_eq!(fleet.hosts()[0].changed(), None);
    // With one host, every instance is on it; with several, an unplaced one has none.
    assert!(fleet.host_of("nowhere").is_err());
    let one = Fleet::single("", Arc::new(Unused));
    assert_eq!(one.host_of("nowhere").unwrap().name(), DEFAULT_HOST);
}
