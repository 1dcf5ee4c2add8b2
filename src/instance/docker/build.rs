//! Building a workstation image through the engine's build endpoint: the generated Dockerfile
//! sent as a tar context, the output streamed to the log and as progress, a failure named by
//! its step with the output's tail.

use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

use super::DockerBackend;
use crate::instance::image::{BUILDING, BUILT, Recipe, tail};
use crate::instance::{InstanceError, ProgressFn};

/// Lines of build output kept for an error.
const TAIL: usize = 15;

impl DockerBackend {
    pub(super) async fn build(
        &self,
        recipe: &Recipe,
        force: bool,
        progress: ProgressFn<'_>,
    ) -> Result<bool, InstanceError> {
        let docker = self.client().await?;
        let tag = recipe.tag();
        if !force && docker.inspect_image(&tag).await.is_ok() {
            return Ok(false);
        }
        // The base first, through the pull with its progress (the build would pull it silently).
        crate::instance::InstanceBackend::ensure_image(self, &recipe.base, progress).await?;
        progress(format!("{BUILDING} {tag} from {}…", recipe.base));
        tracing::info!(image = %tag, base = %recipe.base, "building the workstation image");
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.clone()),
            rm: true,
            forcerm: true,
            nocache: force,
            networkmode: Some(recipe.network.clone()),
            ..Default::default()
        };
        let context = bollard::body_full(recipe.context().into());
        let mut build = docker.build_image(options, None, Some(context));
        let mut lines: Vec<String> = Vec::new();
        let mut step = String::from("the build");
        let failed = |step: &str, error: &str, lines: &[String]| InstanceError::Image {
            image: tag.clone(),
            detail: format!("{step} failed: {}\n{}", error.trim(), tail(lines, TAIL)),
        };
        while let Some(item) = build.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    let error = match e {
                        bollard::errors::Error::DockerResponseServerError { message, .. } => {
                            message
                        }
                        bollard::errors::Error::DockerStreamError { error } => error,
                        other => other.to_string(),
                    };
                    return Err(failed(&step, &error, &lines));
                }
            };
            for line in info.stream.as_deref().unwrap_or_default().lines() {
                let line = line.trim_end();
                if line.is_empty() {
                    continue;
                }
                tracing::info!(image = %tag, "build: {line}");
                if line.starts_with("Step ") {
                    step = line.to_string();
                    progress(format!("{tag}: {line}"));
                }
                lines.push(line.to_string());
                if lines.len() > 200 {
                    lines.drain(..100);
                }
            }
            let error = info
                .error
                .or_else(|| info.error_detail.and_then(|d| d.message));
            if let Some(error) = error {
                return Err(failed(&step, &error, &lines));
            }
        }
        docker
            .inspect_image(&tag)
            .await
            .map_err(|e| InstanceError::Image {
                image: tag.clone(),
                detail: format!("the build ended but the image is not there: {e}"),
            })?;
        progress(format!("{BUILT} {tag}"));
        Ok(true)
    }
}
