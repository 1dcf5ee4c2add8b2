//! Workspace volumes: creating one, handing a fresh one to the instance user, filling one from
//! another instance's workspace on the same engine (clone) or from an archive streamed from
//! another engine (move), through short-lived helper containers.

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountTypeEnum, VolumeCreateOptions};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::{DockerBackend, is_not_found};
use crate::instance::profile::{labels, workspace_mount};
use crate::instance::tar;
use crate::instance::{
    ArchiveStream, INSTANCE_UID, INSTANCE_USER, InstanceError, InstanceSpec, container_name,
    volume_name,
};

/// What is extracted into a volume: a small archive built here, or a workspace streamed from
/// another engine.
pub(super) enum Archive {
    Bytes(Vec<u8>),
    Stream(ArchiveStream),
}

impl DockerBackend {
    pub(super) async fn ensure_volume(
        &self,
        docker: &Docker,
        instance: &str,
    ) -> Result<bool, InstanceError> {
        let volume = volume_name(instance);
        match docker.inspect_volume(&volume).await {
            Ok(_) => return Ok(false),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(self.fail(e, "inspecting the workspace volume").await),
        }
        let options = VolumeCreateOptions {
            name: Some(volume),
            labels: Some(labels(instance)),
            ..Default::default()
        };
        match docker.create_volume(options).await {
            Ok(_) => Ok(true),
            Err(e) => Err(self.fail(e, "creating the workspace volume").await),
        }
    }

    /// Runs a one-shot root helper on the instance's image, with no network and only the
    /// capabilities it names, and waits for it to finish. The instance itself has no capability
    /// to change ownership, so copying workspaces happens here.
    async fn run_helper(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        script: String,
        caps: &[&str],
        mounts: Vec<Mount>,
    ) -> Result<(), InstanceError> {
        let name = format!("{}-init", container_name(&spec.name));
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            user: Some("0:0".into()),
            cmd: Some(vec!["sh".into(), "-c".into(), script]),
            labels: Some(labels(&spec.name)),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(caps.iter().map(|c| c.to_string()).collect()),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                readonly_rootfs: Some(true),
                network_mode: Some("none".into()),
                mounts: Some(mounts),
                ..Default::default()
            }),
            ..Default::default()
        };
        let force = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&name, Some(force.clone())).await;
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        if let Err(e) = docker.create_container(Some(options), body).await {
            return Err(self.fail(e, "preparing the workspace").await);
        }
        let result = async {
            docker
                .start_container(&name, None::<StartContainerOptions>)
                .await?;
            let mut wait = docker.wait_container(&name, None::<WaitContainerOptions>);
            while let Some(status) = wait.next().await {
                status?;
            }
            Ok::<(), DockerError>(())
        }
        .await;
        let _ = docker.remove_container(&name, Some(force)).await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e, "preparing the workspace").await),
        }
    }

    /// Hands a fresh volume to the instance user. Docker skips the root entry of an archive
    /// extracted into a volume, so the archive goes to `/` of a throwaway container (created,
    /// never started, root filesystem writable) that mounts the volume, with `workspace/` as an
    /// ordinary entry owned by the user. It also leaves a marker file, because Docker copies the
    /// image's ownership onto a volume again at every mount while the volume is empty. No
    /// process runs and no capability is granted; a helper container would cost a start.
    pub(super) async fn seed_volume(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
    ) -> Result<(), InstanceError> {
        let marker = b"This workspace is managed by operator.\n";
        let archive = tar::build(
            &[
                tar::Entry {
                    path: "workspace/",
                    mode: 0o755,
                    data: None,
                },
                tar::Entry {
                    path: "workspace/.operator",
                    mode: 0o644,
                    data: Some(marker),
                },
            ],
            INSTANCE_UID,
            INSTANCE_UID,
        );
        self.upload_into_volume(docker, spec, Archive::Bytes(archive))
            .await
    }

    /// Extracts an archive whose entries sit under `workspace/` into the instance's volume,
    /// through `/` of a throwaway container (created, never started) that mounts it.
    pub(super) async fn upload_into_volume(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        archive: Archive,
    ) -> Result<(), InstanceError> {
        let name = format!("{}-seed", container_name(&spec.name));
        let force = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&name, Some(force.clone())).await;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(vec!["true".into()]),
            labels: Some(labels(&spec.name)),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                cap_drop: Some(vec!["ALL".into()]),
                network_mode: Some("none".into()),
                mounts: Some(vec![workspace_mount(&spec.name)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        if let Err(e) = docker.create_container(Some(options), body).await {
            return Err(self.fail(e, "preparing the workspace").await);
        }
        let options = UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        let body = match archive {
            Archive::Bytes(bytes) => bollard::body_full(bytes.into()),
            Archive::Stream(stream) => bollard::body_try_stream(stream),
        };
        let uploaded = docker.upload_to_container(&name, Some(options), body).await;
        let _ = docker.remove_container(&name, Some(force)).await;
        match uploaded {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e, "preparing the workspace").await),
        }
    }

    /// Fills a fresh volume with a copy of another instance's workspace, owned by the instance
    /// user, through a one-shot helper that mounts both.
    pub(super) async fn copy_volume(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        source: &str,
    ) -> Result<(), InstanceError> {
        let mounts = vec![
            workspace_mount(&spec.name),
            Mount {
                target: Some("/from".into()),
                source: Some(volume_name(source)),
                typ: Some(MountTypeEnum::VOLUME),
                read_only: Some(true),
                ..Default::default()
            },
        ];
        let script = format!(
            "cp -a /from/. /workspace/ && touch /workspace/.operator && chown -R {INSTANCE_USER} /workspace"
        );
        self.run_helper(
            docker,
            spec,
            script,
            &["CHOWN", "DAC_OVERRIDE", "FOWNER"],
            mounts,
        )
        .await
    }
}
