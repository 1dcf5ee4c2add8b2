//! The hardened container profile of an instance: what every container the daemon creates
//! looks like. Kept apart from the engine calls so the profile reads in one place.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountTypeEnum, RestartPolicy,
    RestartPolicyNameEnum,
};

use super::{INSTANCE_USER, InstanceSpec, LABEL_INSTANCE, LABEL_MANAGED, volume_name};

/// The process that keeps an instance alive; it exits promptly on SIGTERM.
const KEEPALIVE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

pub fn labels(instance: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_INSTANCE.to_string(), instance.to_string()),
    ])
}

pub fn workspace_mount(instance: &str) -> Mount {
    Mount {
        target: Some("/workspace".into()),
        source: Some(volume_name(instance)),
        typ: Some(MountTypeEnum::VOLUME),
        ..Default::default()
    }
}

/// The hardened container definition of an instance.
pub fn container_body(spec: &InstanceSpec) -> ContainerCreateBody {
    let memory = i64::try_from(spec.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    let tmpfs = HashMap::from([
        (
            "/tmp".to_string(),
            "rw,nosuid,nodev,size=256m,mode=1777".to_string(),
        ),
        (
            "/run".to_string(),
            "rw,nosuid,nodev,noexec,size=16m,mode=755".to_string(),
        ),
    ]);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(spec.name.clone()),
        user: Some(INSTANCE_USER.into()),
        working_dir: Some("/workspace".into()),
        env: Some(
            [
                // User-level installs land in the workspace and survive restart, update,
                // clone and move.
                "HOME=/workspace",
                "PYTHONUSERBASE=/workspace/.local",
                "PIP_USER=1",
                "NPM_CONFIG_PREFIX=/workspace/.npm-global",
                "PATH=/workspace/.local/bin:/workspace/.npm-global/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ]
            .into_iter()
            .map(String::from)
            .chain([format!("OPERATOR_INSTANCE={}", spec.name)])
            .collect(),
        ),
        cmd: Some(vec!["sh".into(), "-c".into(), KEEPALIVE.into()]),
        labels: Some(labels(&spec.name)),
        host_config: Some(HostConfig {
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            privileged: Some(false),
            readonly_rootfs: Some(true),
            tmpfs: Some(tmpfs),
            init: Some(true),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((spec.cpus * 1e9) as i64),
            pids_limit: Some(spec.pids_limit),
            network_mode: Some(spec.network.clone()),
            mounts: Some(vec![workspace_mount(&spec.name)]),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "10m".to_string()),
                    ("max-file".to_string(), "3".to_string()),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
