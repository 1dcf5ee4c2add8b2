//! Automations: when each one runs next (croner on the automation's IANA time zone, so a 09:00
//! job stays at 09:00 local across daylight-saving changes), claiming each due run with a
//! conditional update so it fires exactly once across restarts, and firing into the core through
//! a [`RunSink`] rather than calling agents.
//!
//! Time is injected: [`Scheduler::tick`] takes "now", so tests walk simulated days in
//! milliseconds of work. The scheduler never talks to a channel or a model.

mod describe;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::llm::BoxFuture;
use crate::domain::{Millis, now_millis};
use crate::store::{AutomationRecord, NewActivity, Store, StoreError};

pub use describe::describe;

/// How long the scheduler sleeps at most between looks at the table.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// A run this late at start counts as missed while the daemon was down.
const MISSED_GRACE_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0:?} is not an IANA time zone (for example Europe/Berlin or UTC)")]
    TimeZone(String),
    #[error("{expr:?} is not a cron expression: {message}")]
    Cron { expr: String, message: String },
    #[error("{0:?} never fires")]
    Never(String),
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Five fields with the standard (Vixie) meaning, or an alias such as `@daily`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let tz = Tz::from_str(tz.trim()).map_err(|_| ScheduleError::TimeZone(tz.to_string()))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.to_string(),
                message: e.to_string(),
            })?;
        let schedule = Self { cron, tz };
        if schedule.next_after(now_millis()).is_none() {
            return Err(ScheduleError::Never(expr.to_string()));
        }
        Ok(schedule)
    }

    /// The first run strictly after `after` (milliseconds since the epoch).
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let start = self.tz.timestamp_millis_opt(after).single()?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The next `n` runs after `after`, in the schedule's time zone.
    pub fn upcoming(&self, after: Millis, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            if let Some(t) = self.tz.timestamp_millis_opt(next).single() {
                out.push(t);
            }
            cursor = next;
        }
        out
    }
}

/// What to do with runs that fell due while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedPolicy {
    /// Run once at start (however many were missed).
    RunOnce,
    /// Record them as skipped and wait for the next one.
    Skip,
}

/// Where due runs go: the app runs the automation's prompt as a turn in its chat. The future
/// resolves when that turn ends, with whether it succeeded and a one-line summary.
pub trait RunSink: Send + Sync {
    fn run(&self, automation: AutomationRecord, run_id: i64) -> BoxFuture<'static, (bool, String)>;
}

pub struct Scheduler {
    store: Store,
    sink: Arc<dyn RunSink>,
    missed: MissedPolicy,
    runs: TaskTracker,
    wake: Arc<Notify>,
}

impl Scheduler {
    pub fn new(
        store: Store,
        sink: Arc<dyn RunSink>,
        missed: MissedPolicy,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            sink,
            missed,
            runs: TaskTracker::new(),
            wake,
        }
    }

    /// Once at start: runs left `running` by a stopped process are marked interrupted, and
    /// missed runs are handled by the policy (`RunOnce` leaves them due for the first tick).
    pub async fn recover(&self, now: Millis) -> Result<(), StoreError> {
        let interrupted = self.store.interrupt_stale_runs().await?;
        if interrupted > 0 {
            tracing::warn!("{interrupted} automation run(s) were cut short by a stop");
        }
        if self.missed == MissedPolicy::RunOnce {
            return Ok(());
        }
        for a in self.store.due_automations(now - MISSED_GRACE_MS).await? {
            let Some(scheduled) = a.next_run_at else {
                continue;
            };
            let next = Schedule::parse(&a.cron, &a.timezone)
                .ok()
                .and_then(|s| s.next_after(now));
            if self.store.claim_run(a.id, scheduled, next).await? {
                let note =
                    "missed while the daemon was down; skipped ([scheduler] missed = \"skip\")";
                self.store
                    .start_run(a.id, scheduled, "skipped", note)
                    .await?;
                self.note(&a, "automation.skipped", note.to_string());
            }
        }
        Ok(())
    }

    /// Fires every automation due at `now` exactly once; returns the scheduled times fired.
    pub async fn tick(&self, now: Millis) -> Result<Vec<(i64, Millis)>, StoreError> {
        let mut fired = Vec::new();
        for a in self.store.due_automations(now).await? {
            let Some(scheduled) = a.next_run_at else {
                continue;
            };
            let next = match Schedule::parse(&a.cron, &a.timezone) {
                Ok(s) => s.next_after(scheduled.max(now)),
                Err(e) => {
                    self.note(&a, "automation.error", format!("cannot be scheduled: {e}"));
                    None
                }
            };
            if !self.store.claim_run(a.id, scheduled, next).await? {
                continue;
            }
            if a.running_run_id.is_some() {
                let note = "skipped: the previous run was still going";
                self.store
                    .start_run(a.id, scheduled, "skipped", note)
                    .await?;
                self.note(&a, "automation.skipped", note.to_string());
                continue;
            }
            self.fire(a.clone(), scheduled).await?;
            fired.push((a.id, scheduled));
        }
        Ok(fired)
    }

    /// Starts one run now, outside the schedule (`run now`); refused while one is going.
    pub async fn fire(&self, a: AutomationRecord, scheduled: Millis) -> Result<i64, StoreError> {
        let run_id = self.store.start_run(a.id, scheduled, "running", "").await?;
        self.note(
            &a,
            "automation.run",
            format!("automation {} started", a.name),
        );
        let (store, sink) = (self.store.clone(), self.sink.clone());
        self.runs.spawn(async move {
            let (ok, summary) = sink.run(a, run_id).await;
            // A sink that did not run it at all says why with "skipped: " (a spent budget).
            let status = match (ok, summary.starts_with("skipped: ")) {
                (true, _) => "ok",
                (false, true) => "skipped",
                (false, false) => "failed",
            };
            if let Err(e) = store.finish_run(run_id, status, &summary).await {
                tracing::error!("cannot record the end of automation run {run_id}: {e}");
            }
        });
        Ok(run_id)
    }

    /// Waits until every started run has finished (tests and shutdown).
    pub async fn settle(&self) {
        while !self.runs.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The loop of a running daemon: recover, then tick whenever something is due (or an
    /// operation changed the table), until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if let Err(e) = self.recover(now_millis()).await {
            tracing::error!("automation recovery failed: {e}");
        }
        loop {
            if let Err(e) = self.tick(now_millis()).await {
                tracing::error!("automation tick failed: {e}");
            }
            let sleep = match self.store.earliest_next_run().await {
                Ok(Some(next)) => {
                    Duration::from_millis(u64::try_from(next - now_millis()).unwrap_or(0))
                        .min(MAX_SLEEP)
                }
                _ => MAX_SLEEP,
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
        self.settle().await;
    }

    fn note(&self, a: &AutomationRecord, kind: &str, summary: String) {
        self.store.record(NewActivity {
            kind: kind.to_string(),
            actor: format!("automation:{}", a.name),
            agent: Some(a.agent.clone()),
            summary,
            detail: Some(json!({ "automation": a.name, "cron": a.cron, "timezone": a.timezone })),
            ..NewActivity::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};

    fn at(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
        let naive = NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap();
        tz.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .timestamp_millis()
    }

    fn local(tz: Tz, ms: Millis) -> String {
        tz.timestamp_millis_opt(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    }

    #[test]
    fn nine_oclock_stays_nine_oclock_across_the_change() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // Spring forward in Berlin: 2026-03-29.
        let runs = s.upcoming(at(berlin, 2026, 3, 28, 0, 0), 3);
        let shown: Vec<String> = runs
            .iter()
            .map(|t| t.format("%d %H:%M %Z").to_string())
            .collect();
        assert_eq!(shown, ["28 09:00 CET", "29 09:00 CEST", "30 09:00 CEST"]);
    }

    #[test]
    fn a_time_that_does_not_exist_runs_once_after_the_gap_and_a_repeated_one_once() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let s = Schedule::parse("30 2 * * *", "America/New_York").unwrap();
        // 2026-03-08 02:30 does not exist in New York.
        let next = s.next_after(at(ny, 2026, 3, 8, 0, 0)).unwrap();
        assert_eq!(local(ny, next), "2026-03-08 03:00 EDT");
        // 2026-11-01 01:30 happens twice; a fixed-time job runs at the first only.
        let s = Schedule::parse("30 1 * * *", "America/New_York").unwrap();
        let first = s.next_after(at(ny, 2026, 11, 1, 0, 0)).unwrap();
        let second = s.next_after(first).unwrap();
        assert_eq!(local(ny, first), "2026-11-01 01:30 EDT");
        assert_eq!(local(ny, second), "2026-11-02 01:30 EST");
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            Schedule::parse("0 9 * * *", "Mars/Olympus"),
            Err(ScheduleError::TimeZone(_))
        ));
        assert!(matches!(
            Schedule::parse("61 * * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 * * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(Schedule::parse("@daily", "UTC").is_ok());
        let _ = Utc::now();
    }
}
