//! Memory handed back to the system. glibc's allocator keeps an arena per thread that touched
//! it and rarely returns freed pages, so after a burst of turns the daemon's RSS stays at its
//! peak. Two arenas are plenty for this workload, and once the last running turn has ended and no
//! turn started for a second, the free memory of each heap is released (`malloc_trim`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Caps glibc's arenas at two; call before any thread starts. `MALLOC_ARENA_MAX` in the
/// environment (glibc's own knob) wins.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

static LAST_TRIM: AtomicU64 = AtomicU64::new(0);
static LAST_BUSY: AtomicU64 = AtomicU64::new(0);
/// The least time between two trims.
const TRIM_EVERY_MS: u64 = 2_000;
/// How long the daemon must have started no turn before memory is trimmed: never under load,
/// where freed memory is about to be used again.
const QUIET_MS: u64 = 1_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A turn starts: the daemon is busy.
pub fn busy() {
    LAST_BUSY.store(now_ms(), Ordering::Relaxed);
}

/// The last running turn ended: once the daemon has been quiet for a second, free heap memory
/// goes back to the system (on a blocking thread), at most once every two seconds.
pub fn give_back() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(QUIET_MS)).await;
        let now = now_ms();
        if now.saturating_sub(LAST_BUSY.load(Ordering::Relaxed)) < QUIET_MS {
            return;
        }
        let last = LAST_TRIM.load(Ordering::Relaxed);
        if now.saturating_sub(last) < TRIM_EVERY_MS
            || LAST_TRIM
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let _ = tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only releases free memory of the allocator's heaps.
            unsafe {
                libc::malloc_trim(0);
            }
        })
        .await;
    });
}
