//! The Docker backend: bollard over one engine's endpoint (`endpoint.rs`), with the API version
//! negotiated on first use (Debian's engine speaks 1.41); workspace volumes in `volumes.rs`,
//! commands in `exec.rs`. Every container is hardened: all
//! capabilities dropped, no new privileges, read-only root with tmpfs `/tmp` and `/run`, limits,
//! a non-root user, an init process, capped logs, and no mount but its own workspace volume.

use std::collections::HashMap;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions,
    InspectContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::Mutex;

mod build;
mod endpoint;
mod exec;
mod volumes;

use volumes::Archive;

pub use endpoint::Endpoint;

use super::profile::container_body;
use super::{
    ArchiveStream, ExecOutput, ExecRequest, InstanceBackend, InstanceError, InstanceSpec,
    LABEL_INSTANCE, LABEL_MANAGED, ProgressFn, RunState, container_name, volume_name,
};
use crate::agent::llm::BoxFuture;

/// Seconds a request to the engine may take.
const ENGINE_TIMEOUT: u64 = 60;
/// Seconds a container gets to stop before it is killed.
const STOP_GRACE: i32 = 5;

pub struct DockerBackend {
    endpoint: Endpoint,
    /// Connected and negotiated on first use, so a daemon started before Docker still works.
    client: Mutex<Option<Docker>>,
}

impl DockerBackend {
    /// The engine of `[docker] host`: empty for the local socket, `unix://`, or `tcp://`.
    pub fn new(host: &str) -> Self {
        Self::with_endpoint(Endpoint::from_host(host))
    }

    pub fn with_endpoint(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            client: Mutex::new(None),
        }
    }

    fn describe_host(&self) -> String {
        self.endpoint.describe()
    }

    async fn client(&self) -> Result<Docker, InstanceError> {
        let mut guard = self.client.lock().await;
        if let Some(client) = guard.as_ref() {
            return Ok(client.clone());
        }
        let client = self.endpoint.connect(ENGINE_TIMEOUT).await?;
        let client = client
            .negotiate_version()
            .await
            .map_err(|e| InstanceError::Unreachable(format!("{}: {e}", self.describe_host())))?;
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Maps an engine error; a lost connection also forgets the client so the next call
    /// negotiates afresh.
    async fn fail(&self, e: DockerError, what: &str) -> InstanceError {
        match e {
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => InstanceError::Failed(format!(
                "{what}: the engine answered {status_code}: {}",
                message.trim()
            )),
            other => {
                *self.client.lock().await = None;
                InstanceError::Unreachable(format!("{}: {other}", self.describe_host()))
            }
        }
    }

    /// Maps the outcome of a start, stop or restart: 404 is a missing container, 304 (already
    /// in that state) is success.
    async fn lifecycle(
        &self,
        name: &str,
        what: &str,
        call: impl std::future::Future<Output = Result<(), DockerError>>,
    ) -> Result<(), InstanceError> {
        match call.await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Err(InstanceError::Missing(name.to_string())),
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.fail(e, what).await),
        }
    }
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl InstanceBackend for DockerBackend {
    fn engine(&self) -> BoxFuture<'_, Result<String, InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            match docker.version().await {
                Ok(v) => Ok(format!(
                    "Docker {} (API {})",
                    v.version.unwrap_or_default(),
                    v.api_version.unwrap_or_default()
                )),
                Err(e) => Err(self.fail(e, "asking the engine's version").await),
            }
        })
    }

    fn ensure_image<'a>(
        &'a self,
        image: &'a str,
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            match docker.inspect_image(image).await {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(self.fail(e, "inspecting the image").await),
            }
            if let Some(recipe) = crate::instance::image::recipe_for(image) {
                return self.build(&recipe, false, progress).await.map(|_| ());
            }
            progress(format!("pulling image {image}…"));
            let options = CreateImageOptions {
                from_image: Some(image.to_string()),
                ..Default::default()
            };
            let mut pull = docker.create_image(Some(options), None, None);
            let mut last = String::new();
            while let Some(step) = pull.next().await {
                match step {
                    Ok(info) => {
                        let status = info.status.unwrap_or_default();
                        if !status.is_empty() && status != last {
                            progress(format!("{image}: {status}"));
                            last = status;
                        }
                    }
                    Err(e) => {
                        let detail = match e {
                            DockerError::DockerResponseServerError { message, .. } => message,
                            DockerError::DockerStreamError { error } => error,
                            other => other.to_string(),
                        };
                        return Err(InstanceError::Image {
                            image: image.to_string(),
                            detail: format!("the pull failed: {}", detail.trim()),
                        });
                    }
                }
            }
            Ok(())
        })
    }

    fn has_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            match docker.inspect_image(image).await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(self.fail(e, "inspecting the image").await),
            }
        })
    }

    fn build_image<'a>(
        &'a self,
        recipe: &'a crate::instance::image::Recipe,
        force: bool,
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<bool, InstanceError>> {
        Box::pin(self.build(recipe, force, progress))
    }

    fn create<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        copy_from: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let fresh = self.ensure_volume(&docker, &spec.name).await?;
            match copy_from {
                Some(source) if fresh => self.copy_volume(&docker, spec, source).await?,
                None if fresh => self.seed_volume(&docker, spec).await?,
                Some(_) => {
                    return Err(InstanceError::Failed(format!(
                        "a workspace volume for {} already exists; delete it before cloning into it",
                        spec.name
                    )));
                }
                None => {}
            }
            let name = container_name(&spec.name);
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            if let Err(e) = docker
                .create_container(Some(options), container_body(spec))
                .await
            {
                return Err(self.fail(e, "creating the container").await);
            }
            if let Err(e) = docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
            {
                return Err(self.fail(e, "starting the container").await);
            }
            Ok(())
        })
    }

    fn remove<'a>(
        &'a self,
        name: &'a str,
        keep_volume: bool,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            match docker
                .remove_container(&container_name(name), Some(options))
                .await
            {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(self.fail(e, "removing the container").await),
            }
            if !keep_volume {
                match docker
                    .remove_volume(&volume_name(name), None::<RemoveVolumeOptions>)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(self.fail(e, "removing the workspace volume").await),
                }
            }
            Ok(())
        })
    }

    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let container = container_name(name);
            let call = docker.start_container(&container, None::<StartContainerOptions>);
            self.lifecycle(name, "starting the container", call).await
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = StopContainerOptions {
                t: Some(STOP_GRACE),
                ..Default::default()
            };
            let container = container_name(name);
            let call = docker.stop_container(&container, Some(options));
            self.lifecycle(name, "stopping the container", call).await
        })
    }

    fn restart<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = RestartContainerOptions {
                t: Some(STOP_GRACE),
                ..Default::default()
            };
            let container = container_name(name);
            let call = docker.restart_container(&container, Some(options));
            self.lifecycle(name, "restarting the container", call).await
        })
    }

    fn state<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<RunState, InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            match docker
                .inspect_container(&container_name(name), None::<InspectContainerOptions>)
                .await
            {
                Ok(info) => {
                    let running = info.state.and_then(|s| s.running).unwrap_or(false);
                    Ok(if running {
                        RunState::Running
                    } else {
                        RunState::Stopped
                    })
                }
                Err(e) if is_not_found(&e) => Ok(RunState::Missing),
                Err(e) => Err(self.fail(e, "inspecting the container").await),
            }
        })
    }

    fn logs<'a>(
        &'a self,
        name: &'a str,
        tail: u32,
    ) -> BoxFuture<'a, Result<String, InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = LogsOptions {
                stdout: true,
                stderr: true,
                tail: tail.to_string(),
                ..Default::default()
            };
            let mut stream = docker.logs(&container_name(name), Some(options));
            let mut text = String::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(output) => text.push_str(&String::from_utf8_lossy(&output.into_bytes())),
                    Err(e) if is_not_found(&e) => {
                        return Err(InstanceError::Missing(name.to_string()));
                    }
                    Err(e) => return Err(self.fail(e, "reading the logs").await),
                }
            }
            Ok(text)
        })
    }

    fn exec<'a>(
        &'a self,
        name: &'a str,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecOutput, InstanceError>> {
        Box::pin(self.run_exec(name, request))
    }

    fn attach<'a>(
        &'a self,
        name: &'a str,
        command: String,
        env: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<crate::instance::Attached, InstanceError>> {
        Box::pin(self.run_attached(name, command, env))
    }

    fn spawn<'a>(
        &'a self,
        name: &'a str,
        command: String,
        env: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(self.run_detached(name, command, env))
    }

    fn managed(&self) -> BoxFuture<'_, Result<Vec<String>, InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![format!("{LABEL_MANAGED}=true")],
                )])),
                ..Default::default()
            };
            match docker.list_containers(Some(options)).await {
                Ok(list) => Ok(list
                    .into_iter()
                    .filter_map(|c| c.labels.and_then(|mut l| l.remove(LABEL_INSTANCE)))
                    .collect()),
                Err(e) => Err(self.fail(e, "listing containers").await),
            }
        })
    }

    fn export_workspace<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ArchiveStream, InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let container = container_name(name);
            // A clear "missing" rather than an error in the middle of the stream.
            match docker
                .inspect_container(&container, None::<InspectContainerOptions>)
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Err(InstanceError::Missing(name.into())),
                Err(e) => return Err(self.fail(e, "inspecting the container").await),
            }
            let options = DownloadFromContainerOptions {
                path: "/workspace".into(),
            };
            let stream = docker
                .download_from_container(&container, Some(options))
                .map(|chunk| chunk.map_err(std::io::Error::other));
            Ok(Box::pin(stream) as ArchiveStream)
        })
    }

    fn import_workspace<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        archive: ArchiveStream,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            if !self.ensure_volume(&docker, &spec.name).await? {
                return Err(InstanceError::Failed(format!(
                    "a workspace volume for {} already exists on {}; it is left as it is",
                    spec.name,
                    self.describe_host()
                )));
            }
            let result = self
                .upload_into_volume(&docker, spec, Archive::Stream(archive))
                .await;
            if result.is_err() {
                let _ = docker
                    .remove_volume(&volume_name(&spec.name), None::<RemoveVolumeOptions>)
                    .await;
            }
            result
        })
    }
}
