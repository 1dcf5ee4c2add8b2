//! Memory handed back to the system. glibc's allocator keeps an arena per thread that touched
//! it and rarely returns freed pages, so after a burst of turns the daemon's RSS stays at its
//! peak. Two arenas are plenty for this workload, and when the last running turn ends the free
//! memory at the top of each heap is released (`malloc_trim`), at most once every few seconds.

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
/// The least time between two trims.
const TRIM_EVERY_MS: u64 = 2_000;

/// Gives free heap memory back to the system (on a blocking thread), unless that was done in
/// the last two seconds.
pub fn give_back() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let last = LAST_TRIM.load(Ordering::Relaxed);
    if now.saturating_sub(last) < TRIM_EVERY_MS
        || LAST_TRIM
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn_blocking(|| {
            // SAFETY: malloc_trim only releases free memory of the allocator's heaps.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    }
}
