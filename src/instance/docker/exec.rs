//! Commands in a container: attached execs with an in-container timeout and an output cap, and
//! detached ones for background jobs. Secrets arrive as the environment of the one exec.

use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{DockerBackend, is_not_found};
use crate::instance::{ExecOutput, ExecRequest, INSTANCE_USER, InstanceError, container_name};

impl DockerBackend {
    /// Creates an exec in the instance's container; 404 is a missing container, 409 one that
    /// is not running.
    async fn create_exec(
        &self,
        docker: &bollard::Docker,
        name: &str,
        options: CreateExecOptions<&str>,
    ) -> Result<String, InstanceError> {
        match docker.create_exec(&container_name(name), options).await {
            Ok(exec) => Ok(exec.id),
            Err(e) if is_not_found(&e) => Err(InstanceError::Missing(name.to_string())),
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Err(InstanceError::Failed(format!(
                "instance {name} is not running"
            ))),
            Err(e) => Err(self.fail(e, "starting the command").await),
        }
    }

    /// Runs a command to its end (or its timeout), collecting output up to the cap.
    pub(super) async fn run_exec(
        &self,
        name: &str,
        request: ExecRequest,
    ) -> Result<ExecOutput, InstanceError> {
        let docker = self.client().await?;
        let secs = request.timeout.as_secs().max(1).to_string();
        // `timeout` (coreutils or busybox) kills the command inside the container; the
        // engine has no call to kill an exec.
        let cmd = vec!["timeout", "-s", "KILL", &secs, "sh", "-c", &request.command];
        let env: Vec<String> = request
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let options = CreateExecOptions {
            attach_stdin: Some(request.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            env: Some(env.iter().map(String::as_str).collect()),
            cmd: Some(cmd),
            user: Some(INSTANCE_USER),
            working_dir: Some("/workspace"),
            ..Default::default()
        };
        let exec = self.create_exec(&docker, name, options).await?;
        let started = Instant::now();
        let (mut output, mut input) = match docker.start_exec(&exec, None).await {
            Ok(StartExecResults::Attached { output, input }) => (output, input),
            Ok(StartExecResults::Detached) => {
                return Err(InstanceError::Failed("the command detached".into()));
            }
            Err(e) => return Err(self.fail(e, "starting the command").await),
        };
        if let Some(stdin) = &request.stdin {
            let written = async {
                input.write_all(stdin).await?;
                input.shutdown().await
            }
            .await;
            if let Err(e) = written {
                return Err(InstanceError::Failed(format!(
                    "could not send input to the command: {e}"
                )));
            }
        }
        drop(input);
        let mut kept: Vec<u8> = Vec::new();
        let mut dropped = 0usize;
        // The in-container timeout ends the command; this one only guards against an
        // engine that stops answering.
        let deadline = request.timeout + Duration::from_secs(10);
        let read = tokio::time::timeout(deadline, async {
            while let Some(chunk) = output.next().await {
                let bytes = chunk?.into_bytes();
                if let Some(sink) = &request.on_output {
                    sink.tell(&bytes);
                }
                let room = request.output_cap.saturating_sub(kept.len());
                kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
                dropped += bytes.len().saturating_sub(room);
            }
            Ok::<(), DockerError>(())
        })
        .await;
        let mut timed_out = match read {
            Ok(Ok(())) => false,
            Ok(Err(e)) => return Err(self.fail(e, "reading the command's output").await),
            Err(_) => true,
        };
        let exit_code = match docker.inspect_exec(&exec).await {
            Ok(info) if info.running != Some(true) => info.exit_code,
            _ => None,
        };
        if exit_code == Some(137) && started.elapsed() >= request.timeout {
            timed_out = true;
        }
        Ok(ExecOutput {
            exit_code,
            output: String::from_utf8_lossy(&kept).into_owned(),
            dropped,
            timed_out,
        })
    }

    /// Starts a command with its input and output attached. A task copies its stdout into a
    /// pipe and its stderr to a channel by lines; both end when the command does.
    pub(super) async fn run_attached(
        &self,
        name: &str,
        command: String,
        env: Vec<(String, String)>,
    ) -> Result<crate::instance::Attached, InstanceError> {
        let docker = self.client().await?;
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let options = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            env: Some(env.iter().map(String::as_str).collect()),
            cmd: Some(vec!["sh", "-c", &command]),
            user: Some(INSTANCE_USER),
            working_dir: Some("/workspace"),
            ..Default::default()
        };
        let exec = self.create_exec(&docker, name, options).await?;
        let (mut output, mut input) = match docker.start_exec(&exec, None).await {
            Ok(StartExecResults::Attached { output, input }) => (output, input),
            Ok(StartExecResults::Detached) => {
                return Err(InstanceError::Failed("the command detached".into()));
            }
            Err(e) => return Err(self.fail(e, "starting the command").await),
        };
        // Input goes through a pipe too, so what holds it is an ordinary `Send + Sync` writer;
        // closing it closes the command's stdin.
        let (mut stdin_rx, stdin) = tokio::io::simplex(64 * 1024);
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stdin_rx, &mut input).await;
            let _ = input.shutdown().await;
        });
        let (stdout, mut writer) = tokio::io::simplex(64 * 1024);
        let (err_tx, stderr) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut line = Vec::new();
            while let Some(Ok(chunk)) = output.next().await {
                match chunk {
                    bollard::container::LogOutput::StdOut { message }
                        if writer.write_all(&message).await.is_err() =>
                    {
                        break;
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        for &b in message.iter() {
                            if b == b'\n' {
                                let text = String::from_utf8_lossy(&line).into_owned();
                                let _ = err_tx.try_send(text);
                                line.clear();
                            } else if line.len() < 4096 {
                                line.push(b);
                            }
                        }
                    }
                    _ => {}
                }
            }
            let _ = writer.shutdown().await;
        });
        Ok(crate::instance::Attached {
            stdin,
            stdout,
            stderr,
        })
    }

    /// Starts a command detached from the daemon.
    pub(super) async fn run_detached(
        &self,
        name: &str,
        command: String,
        env: Vec<(String, String)>,
    ) -> Result<(), InstanceError> {
        let docker = self.client().await?;
        // Secrets travel as the environment of this one exec, never in the container's
        // configuration.
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let options = CreateExecOptions {
            cmd: Some(vec!["sh", "-c", &command]),
            env: Some(env.iter().map(String::as_str).collect()),
            user: Some(INSTANCE_USER),
            working_dir: Some("/workspace"),
            ..Default::default()
        };
        let exec = self.create_exec(&docker, name, options).await?;
        let detached = StartExecOptions {
            detach: true,
            ..Default::default()
        };
        match docker.start_exec(&exec, Some(detached)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e, "starting the command").await),
        }
    }
}
