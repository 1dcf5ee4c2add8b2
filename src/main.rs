//! The `operator` command line: run | chat | check | migrate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use operator::{app, check, config, keys, logging, store::Store};

/// A daemon that turns Telegram and Discord into the control room for a fleet of AI agents.
#[derive(Parser)]
#[command(name = "operator", version, about, long_about = None)]
struct Cli {
    /// The config file. Default: $OPERATOR_CONFIG, then config/operator.toml, then
    /// /etc/operator/operator.toml, else built-in defaults.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: channels, agents and the admin listener.
    Run,
    /// Talk to Operator in this terminal, with the same state as the daemon.
    Chat,
    /// Validate the config, open the database, and report what is configured and reachable.
    Check,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage skills from the command line.
    Skills {
        #[command(subcommand)]
        action: SkillsCommand,
    },
    /// Manage secrets from the command line.
    Secrets {
        #[command(subcommand)]
        action: SecretsCommand,
    },
    /// The workstation image instances run (`[docker] packages` and `setup`).
    Image {
        #[command(subcommand)]
        action: ImageCommand,
    },
    /// Save the state (a consistent snapshot, while the daemon runs) as one .tar.gz.
    Backup {
        /// Where to write the archive (default: operator-backup-<time>.tar.gz here).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Add every instance's /workspace, streamed from its Docker engine.
        #[arg(long)]
        workspaces: bool,
        /// Put the master key in the archive too (then it is written 0600).
        #[arg(long)]
        include_key: bool,
    },
    /// Bring a backup back into an empty state directory, after checking every member.
    Restore {
        /// The archive `operator backup` wrote.
        file: PathBuf,
        /// The state directory to fill (default: the configured one); missing or empty.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SkillsCommand {
    /// Store a skill folder (SKILL.md plus scripts/, references/, assets/) as a new version.
    Import {
        /// The skill's folder; its name must equal the skill's name.
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build it on every Docker engine of the config (unless it is there already).
    Build {
        /// Build again even when the tag exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Re-encrypt every secret under a new master key.
    RotateKey {
        /// Where to write the new key when the current one comes from a systemd credential.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let loaded = config::load(cli.config.as_deref())?;
    let quiet = !matches!(cli.command, Command::Run);
    logging::init(&loaded.settings.log, quiet)?;
    operator::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run => {
                let listen = loaded.settings.admin.listen.clone();
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on [admin] listen = {listen}"))?;
                let shutdown = shutdown_signal()?;
                app::run(loaded.settings, listener, shutdown).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Chat => {
                app::chat(loaded.settings).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Check => {
                let report = check::run(&loaded).await;
                print!("{}", report.render());
                Ok(if report.has_errors() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            Command::Migrate => {
                let store = Store::open(&loaded.settings.state_dir()).await?;
                let applied = store.migrate().await?;
                store.close().await;
                println!("applied {applied} migration(s); the database is up to date");
                Ok(ExitCode::SUCCESS)
            }
            Command::Skills {
                action: SkillsCommand::Import { path },
            } => {
                println!("{}", app::import_skill(loaded.settings, &path).await?);
                Ok(ExitCode::SUCCESS)
            }
            Command::Backup {
                out,
                workspaces,
                include_key,
            } => {
                let options = operator::backup::Options {
                    out,
                    workspaces,
                    include_key,
                };
                println!(
                    "{}",
                    operator::backup::backup(&loaded.settings, options).await?
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Restore { file, state } => {
                let summary = operator::backup::restore(&loaded.settings, &file, state).await?;
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Image {
                action: ImageCommand::Build { force },
            } => {
                println!(
                    "{}",
                    operator::app::image_build(&loaded.settings, force).await?
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Secrets {
                action: SecretsCommand::RotateKey { out },
            } => {
                let summary = keys::rotate(&loaded.settings.state_dir(), out.as_deref()).await?;
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    // Everything that matters has finished and the database is closed; a blocking helper
    // thread still parked in the pool (a DNS lookup, a file read) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// Completes on the first SIGTERM or SIGINT; a second signal exits at once. The handlers are
/// installed when this is called, not when the future is first polled, so a signal that arrives
/// just after the daemon reports ready is not lost (nor fatal).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        });
    })
}
