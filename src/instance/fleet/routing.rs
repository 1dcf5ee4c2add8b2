//! The fleet as an [`InstanceBackend`]: each call about an instance goes to its host, through
//! that host's health gate.

use super::Fleet;
use crate::agent::llm::BoxFuture;
use crate::instance::{
    ArchiveStream, ExecOutput, ExecRequest, InstanceBackend, InstanceError, InstanceSpec,
    ProgressFn, RunState,
};

/// Every call about an instance goes to its host.
impl InstanceBackend for Fleet {
    /// Every host's engine, one line each; fails when any host does not answer.
    fn engine(&self) -> BoxFuture<'_, Result<String, InstanceError>> {
        Box::pin(async move {
            let mut lines = Vec::new();
            let mut down = false;
            for (host, health) in self.probe_all().await {
                match (health.reachable, health.version) {
                    (Some(true), Some(version)) => {
                        lines.push(format!("{}: {version}", host.name()))
                    }
                    _ => {
                        down = true;
                        lines.push(format!(
                            "{}: {}",
                            host.name(),
                            health.error.unwrap_or_else(|| "not answering".into())
                        ));
                    }
                }
            }
            let text = lines.join("; ");
            if down {
                Err(InstanceError::Unreachable(text))
            } else {
                Ok(text)
            }
        })
    }

    /// Makes the image present on every host that answers.
    fn ensure_image<'a>(
        &'a self,
        image: &'a str,
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            for host in &self.hosts {
                if !host.is_down() {
                    host.run(host.backend.ensure_image(image, progress)).await?;
                }
            }
            Ok(())
        })
    }

    fn has_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, InstanceError>> {
        Box::pin(async move {
            for host in &self.hosts {
                if !host.is_down() && !host.run(host.backend.has_image(image)).await? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Builds the image on every host that answers; built if any host built it.
    fn build_image<'a>(
        &'a self,
        recipe: &'a crate::instance::image::Recipe,
        force: bool,
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<bool, InstanceError>> {
        Box::pin(async move {
            let mut built = false;
            for host in &self.hosts {
                if !host.is_down() {
                    built |= host
                        .run(host.backend.build_image(recipe, force, progress))
                        .await?;
                }
            }
            Ok(built)
        })
    }

    fn create<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        copy_from: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(&spec.name)?;
            host.run(host.backend.create(spec, copy_from)).await
        })
    }

    fn remove<'a>(
        &'a self,
        name: &'a str,
        keep_volume: bool,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.remove(name, keep_volume)).await
        })
    }

    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.start(name)).await
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.stop(name)).await
        })
    }

    fn restart<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.restart(name)).await
        })
    }

    fn state<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<RunState, InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.state(name)).await
        })
    }

    fn logs<'a>(
        &'a self,
        name: &'a str,
        tail: u32,
    ) -> BoxFuture<'a, Result<String, InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.logs(name, tail)).await
        })
    }

    fn exec<'a>(
        &'a self,
        name: &'a str,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecOutput, InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.exec(name, request)).await
        })
    }

    fn spawn<'a>(
        &'a self,
        name: &'a str,
        command: String,
        env: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.spawn(name, command, env)).await
        })
    }

    fn attach<'a>(
        &'a self,
        name: &'a str,
        command: String,
        env: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<crate::instance::Attached, InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.attach(name, command, env)).await
        })
    }

    /// The managed containers of every host that answers.
    fn managed(&self) -> BoxFuture<'_, Result<Vec<String>, InstanceError>> {
        Box::pin(async move {
            let mut names = Vec::new();
            for host in &self.hosts {
                if let Ok(found) = host.run(host.backend.managed()).await {
                    names.extend(found);
                }
            }
            Ok(names)
        })
    }

    fn export_workspace<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ArchiveStream, InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(name)?;
            host.run(host.backend.export_workspace(name)).await
        })
    }

    fn import_workspace<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        archive: ArchiveStream,
    ) -> BoxFuture<'a, Result<(), InstanceError>> {
        Box::pin(async move {
            let host = self.host_of(&spec.name)?;
            host.run(host.backend.import_workspace(spec, archive)).await
        })
    }
}
