//! For the chat benchmarks: `operator run` in a temporary state directory, pointed at a fake
//! model and a fake chat platform (its config section given), with rate limits out of the way.

// Each bench uses some of these helpers.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// A running daemon and the directory it lives in (removed on drop, after the process).
pub struct Daemon {
    pub child: Child,
    /// Its admin listener, `127.0.0.1:<port>`.
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the binary with the model at `llm_base_url` and `platform` (a config section).
    pub fn start(bin: &str, llm_base_url: &str, platform: &str) -> Self {
        Self::start_from(bin, llm_base_url, platform, None)
    }

    /// Like [`Daemon::start`], on a copy of the database in `state` when given.
    pub fn start_from(
        bin: &str,
        llm_base_url: &str,
        platform: &str,
        state: Option<&std::path::Path>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if let Some(state) = state {
            let into = dir.path().join("state");
            std::fs::create_dir_all(&into).unwrap();
            std::fs::copy(state.join("operator.db"), into.join("operator.db")).unwrap();
        }
        let admin = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().to_string()
        };
        let config = dir.path().join("operator.toml");
        std::fs::write(
            &config,
            format!(
                "[state]\ndir = {:?}\n[admin]\nlisten = {admin:?}\n\
                 [llm]\nprovider = \"openai\"\nbase_url = {llm_base_url:?}\napi_key = \"k\"\nmodel = \"m\"\n\
                 [docker]\nhost = \"unix:///nonexistent.sock\"\n{platform}",
                dir.path().join("state").display().to_string(),
            ),
        )
        .unwrap();
        let child = Command::new(binary(bin))
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn operator");
        Self {
            child,
            admin,
            _dir: dir,
        }
    }

    /// Its state directory.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("state")
    }

    /// Context switches of all the daemon's threads so far (voluntary and not): each wakeup of
    /// a thread that waited (a store round trip, a socket, a timer) is one.
    pub fn context_switches(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// (statements, commits) it has run against its database, from `/metrics`.
    pub fn db_totals(&self) -> (u64, u64) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.admin).expect("admin listener");
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        )
        .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        let value = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        };
        (
            value("operator_db_statements_total"),
            value("operator_db_commits_total"),
        )
    }

    /// Where the database counters stand now, and what one `/metrics` read costs, for
    /// [`Daemon::db_per`].
    pub fn db_mark(&self) -> DbMark {
        let first = self.db_totals();
        let now = self.db_totals();
        DbMark {
            now,
            reading: (now.0 - first.0, now.1 - first.1),
        }
    }

    /// (statements, commits) per item for `items` handled since `mark`, once the feed's last
    /// batch has landed, less the `/metrics` reads.
    pub async fn db_per(&self, mark: &DbMark, items: usize) -> (f64, f64) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let after = self.db_totals();
        let per = |after: u64, before: u64, reading: u64| {
            (after - before).saturating_sub(reading) as f64 / items as f64
        };
        (
            per(after.0, mark.now.0, mark.reading.0),
            per(after.1, mark.now.1, mark.reading.1),
        )
    }

    /// Stops it with SIGTERM and waits.
    pub fn stop(mut self) {
        terminate(&mut self.child);
    }
}

/// Database counters at a point, with the cost of reading them.
pub struct DbMark {
    now: (u64, u64),
    reading: (u64, u64),
}

/// The platform keys every chat benchmark uses: anyone may talk, no pacing.
pub const OPEN_AND_UNPACED: &str = "owners = [1]\ndm_policy = \"open\"\n\
     messages_per_second = 1000000.0\nchat_messages_per_second = 1000000.0\n";

/// A bench's count of messages: as written, or a hundredth of it (at least one) when
/// `OPERATOR_BENCH_QUICK` is set, to walk each path a few times rather than measure it (the
/// daemon under a profiler: `scripts/symbol-order.sh`).
pub fn count(n: usize) -> usize {
    if std::env::var_os("OPERATOR_BENCH_QUICK").is_some() {
        (n / 100).max(1)
    } else {
        n
    }
}

/// The resident memory of a process, from /proc, in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One start: time until the "ready" log line; optionally the RSS a second later.
pub fn start_once(
    bin: &str,
    config: &std::path::Path,
    measure_rss: bool,
) -> (std::time::Duration, u64) {
    let started = std::time::Instant::now();
    let mut child = Command::new(binary(bin))
        .args(["run", "--config"])
        .arg(config)
        .env("OPERATOR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn operator");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut elapsed = None;
    for line in lines.by_ref() {
        if line.unwrap_or_default().contains("ready") {
            elapsed = Some(started.elapsed());
            break;
        }
    }
    let elapsed = elapsed.expect("operator never became ready");
    let mut kib = 0;
    if measure_rss {
        std::thread::sleep(std::time::Duration::from_secs(1));
        kib = rss_kib(child.id());
    }
    // Its log is drained while it stops, so a full pipe cannot hold it up.
    std::thread::spawn(move || for _ in lines {});
    terminate(&mut child);
    (elapsed, kib)
}

/// Stops a daemon with SIGTERM, as systemd does, and waits for it.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The daemon binary a bench runs: `OPERATOR_BENCH_BIN` when set (another build, to measure
/// before and after in one sitting), else the one cargo built with the bench.
pub fn binary(built: &str) -> std::path::PathBuf {
    std::env::var_os("OPERATOR_BENCH_BIN").map_or_else(|| built.into(), Into::into)
}
