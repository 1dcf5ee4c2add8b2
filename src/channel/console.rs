//! The console channel behind `operator chat`: one chat on the local terminal, whose user is an
//! owner (whoever can run the binary against the state directory controls the daemon anyway).
//!
//! Lines from stdin become inbound messages; replies go to stdout. On a terminal it shows a
//! prompt and a spinner while the agent works, and Ctrl-C cancels the running turn (sent as
//! `/stop`) instead of ending the process; Ctrl-C with nothing running, or end of input, quits.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use tokio::sync::Notify;

use super::{Capabilities, Channel, ChannelError, Health, Inbound, InboundTx, Outbound, Receipt};
use crate::agent::llm::BoxFuture;
use crate::domain::ChatRef;

pub const CHANNEL_ID: &str = "console";

pub struct Console {
    interactive: bool,
    /// Lines sent and not yet answered, so Ctrl-C knows whether to cancel or quit. Each line
    /// carries a receipt and the router answers every receipt once, however many lines one
    /// turn answers.
    pending: AtomicUsize,
    /// Told when a line is answered.
    answered: Notify,
    /// The next line's receipt: microseconds since the epoch at start, then counting, so no
    /// two lines of any session share one (a conversation stores each receipt once).
    next_receipt: AtomicI64,
    /// What the spinner shows; `None` hides it.
    spinner: Mutex<Option<String>>,
    /// The growing reply printed so far on the current line (empty: none).
    streamed: Mutex<String>,
    /// The request for an owner's yes that `y` or `n` answers now.
    asking: Mutex<Option<String>>,
    /// Told when a request is shown, so a script's next line (its answer) is read.
    asked: Notify,
}

impl Console {
    pub fn new() -> Self {
        Self {
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            pending: AtomicUsize::new(0),
            answered: Notify::new(),
            next_receipt: AtomicI64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_micros() as i64),
            ),
            spinner: Mutex::new(None),
            streamed: Mutex::new(String::new()),
            asking: Mutex::new(None),
            asked: Notify::new(),
        }
    }

    /// `y` / `n` (or yes / no) while a request waits: the command that decides it.
    fn decision(&self, line: &str) -> Option<String> {
        let verb = match line.to_ascii_lowercase().as_str() {
            "y" | "yes" => "approve",
            "n" | "no" => "deny",
            _ => return None,
        };
        let code = self
            .asking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(format!("/{verb} {code}"))
    }

    /// Prints what `text` adds to the reply printed so far; a text that does not continue it
    /// (the model's next step) starts a new line. `done` ends the line.
    fn stream(&self, text: &str, done: bool) -> std::io::Result<()> {
        let mut streamed = self.streamed.lock().unwrap_or_else(|e| e.into_inner());
        let mut stdout = std::io::stdout().lock();
        match text.strip_prefix(streamed.as_str()) {
            Some(rest) => write!(stdout, "{rest}")?,
            None => {
                if !streamed.is_empty() {
                    writeln!(stdout)?;
                }
                write!(stdout, "{text}")?;
            }
        }
        if done {
            writeln!(stdout)?;
            streamed.clear();
        } else {
            streamed.clear();
            streamed.push_str(text);
        }
        stdout.flush()
    }

    /// The one chat the console has.
    pub fn chat() -> ChatRef {
        ChatRef::new(CHANNEL_ID, "local")
    }

    fn set_spinner(&self, label: Option<String>) {
        if !self.interactive {
            return;
        }
        let mut spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
        if label.is_none() && spinner.is_some() {
            eprint!("\r\x1b[2K");
        }
        *spinner = label;
    }

    fn prompt(&self) {
        if self.interactive {
            eprint!("› ");
            let _ = std::io::stderr().flush();
        }
    }

    async fn spin(self: Arc<Self>, shutdown: CancellationToken) {
        const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        let mut frame = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !shutdown.is_cancelled() {
            tick.tick().await;
            let spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(label) = spinner.as_deref() {
                eprint!("\r\x1b[2K{} {label}", FRAMES[frame % FRAMES.len()]);
                let _ = std::io::stderr().flush();
                frame += 1;
            }
        }
    }

    fn inbound(&self, text: String) -> Inbound {
        let user = std::env::var("USER").unwrap_or_else(|_| "local".into());
        let mut message = Inbound::direct(Self::chat(), "local", user, text);
        message.receipt = Some(Receipt(self.next_receipt.fetch_add(1, Ordering::SeqCst)));
        self.pending.fetch_add(1, Ordering::SeqCst);
        message
    }

    /// Waits until every line sent so far is answered.
    async fn settled(&self) {
        loop {
            let answered = self.answered.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            answered.await;
        }
    }

    async fn read_loop(
        self: Arc<Self>,
        inbound: InboundTx,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        // One listener for the whole session, so a Ctrl-C that arrives while a line is being
        // handled is kept rather than lost between loop iterations.
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        if self.interactive {
            eprintln!(
                "Operator {} — type /help for commands, Ctrl-D to quit.",
                env!("CARGO_PKG_VERSION")
            );
            self.prompt();
        }
        loop {
            let line = tokio::select! {
                // A Ctrl-C that arrives with a line is handled first.
                biased;
                () = shutdown.cancelled() => break,
                _ = interrupt.recv() => {
                    if self.pending.load(Ordering::SeqCst) > 0 {
                        self.set_spinner(Some("stopping…".into()));
                        let _ = inbound.send(self.inbound("/stop".into())).await;
                        continue;
                    }
                    eprintln!();
                    break;
                }
                line = lines.next_line() => line?,
            };
            let Some(line) = line else {
                // End of input: the turns already sent still run, and Ctrl-C still cancels them.
                while self.pending.load(Ordering::SeqCst) > 0 {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        _ = interrupt.recv() => {
                            let _ = inbound.send(self.inbound("/stop".into())).await;
                        }
                        () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                    }
                }
                break;
            };
            let text = line.trim().to_string();
            let mut text = self.decision(&text).unwrap_or(text);
            if text.is_empty() {
                self.prompt();
                continue;
            }
            if matches!(text.as_str(), "/quit" | "/exit") {
                break;
            }
            // Piped input is a script: one line, one answer, in order (only `/stop` and the
            // other immediate commands go at once). On a terminal a line typed while a turn
            // runs goes at once, and may steer that turn.
            if !self.interactive && !crate::domain::is_immediate(&text) {
                loop {
                    let asked = self.asked.notified();
                    // A request for a yes is answered by the script's next line: `y` or `n`
                    // decides it, anything else goes to the waiting turn at once.
                    if let Some(command) = self.decision(&text) {
                        text = command;
                        break;
                    }
                    if self
                        .asking
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_some()
                    {
                        break;
                    }
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return Ok(()),
                        _ = interrupt.recv() => {
                            let _ = inbound.send(self.inbound("/stop".into())).await;
                        }
                        () = asked => {}
                        () = self.settled() => break,
                    }
                }
            }
            if inbound.send(self.inbound(text)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Channel for Console {
    fn id(&self) -> &str {
        CHANNEL_ID
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_chars: 0,
            can_edit: false,
            answers_are_stored: false,
        }
    }

    fn run(
        self: Arc<Self>,
        inbound: InboundTx,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let spinner = tokio::spawn(self.clone().spin(shutdown.child_token()));
            let result = self.read_loop(inbound, shutdown).await;
            spinner.abort();
            result
        })
    }

    fn send<'a>(
        &'a self,
        _chat: &'a ChatRef,
        message: Outbound,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let line = match message {
                Outbound::Typing => {
                    self.set_spinner(Some("thinking…".into()));
                    return Ok(());
                }
                Outbound::Progress(step) => {
                    self.set_spinner(Some(step));
                    return Ok(());
                }
                Outbound::Partial(text) => {
                    self.set_spinner(None);
                    return self
                        .stream(&text, false)
                        .map_err(|e| ChannelError::Send(e.to_string()));
                }
                Outbound::Reply(text) => {
                    // The reply finishes the line its text was streamed on.
                    self.set_spinner(None);
                    self.stream(&text, true)
                        .map_err(|e| ChannelError::Send(e.to_string()))?;
                    if self.interactive {
                        println!();
                    }
                    if self.pending.load(Ordering::SeqCst) == 0 {
                        self.prompt();
                    }
                    return Ok(());
                }
                Outbound::Notice(text) => text,
                Outbound::Approval { code, text } => {
                    *self.asking.lock().unwrap_or_else(|e| e.into_inner()) = Some(code.clone());
                    self.asked.notify_waiters();
                    format!("⚠️ {text}\nApprove? y/n (or /approve {code}, /deny {code})")
                }
                Outbound::Decided { code, text } => {
                    let mut asking = self.asking.lock().unwrap_or_else(|e| e.into_inner());
                    if asking.as_deref() == Some(code.as_str()) {
                        *asking = None;
                    }
                    text
                }
                Outbound::Status { text, .. } => format!("… {text}"),
                Outbound::Failed(text) => format!("error: {text}"),
                Outbound::Cancelled => "(stopped)".to_string(),
                // A terminal line cannot be taken back.
                Outbound::Retract(_) => return Ok(()),
                Outbound::Voice(bytes) => format!("[a spoken reply of {} bytes]", bytes.len()),
                Outbound::File { name, bytes } => {
                    // A terminal cannot show a file: it is saved where the user can open it.
                    let dir = std::env::temp_dir().join("operator-files");
                    let path = dir.join(&name);
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::write(&path, &bytes))
                        .map_err(|e| ChannelError::Send(format!("cannot save {name}: {e}")))?;
                    format!(
                        "[file {name} ({} bytes) saved to {}]",
                        bytes.len(),
                        path.display()
                    )
                }
            };
            self.set_spinner(None);
            // A reply streamed and then cut short (a failure) keeps its line.
            let cut_short =
                !std::mem::take(&mut *self.streamed.lock().unwrap_or_else(|e| e.into_inner()))
                    .is_empty();
            let mut stdout = std::io::stdout().lock();
            if cut_short {
                writeln!(stdout).map_err(|e| ChannelError::Send(e.to_string()))?;
            }
            writeln!(stdout, "{line}").map_err(|e| ChannelError::Send(e.to_string()))?;
            if self.interactive {
                writeln!(stdout).map_err(|e| ChannelError::Send(e.to_string()))?;
            }
            stdout
                .flush()
                .map_err(|e| ChannelError::Send(e.to_string()))?;
            drop(stdout);
            if self.pending.load(Ordering::SeqCst) == 0 {
                self.prompt();
            }
            Ok(())
        })
    }

    fn answer<'a>(
        &'a self,
        chat: &'a ChatRef,
        receipts: &'a [Receipt],
        parts: Vec<Outbound>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let mut result = Ok(());
            for part in parts {
                if let Err(e) = self.send(chat, part).await {
                    result = Err(e);
                }
            }
            let n = receipts.len();
            let left = self
                .pending
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                    Some(p.saturating_sub(n))
                })
                .map_or(0, |before| before.saturating_sub(n));
            self.answered.notify_waiters();
            if left == 0 {
                self.prompt();
            }
            result
        })
    }

    fn health(&self) -> Health {
        Health::Up
    }
}
