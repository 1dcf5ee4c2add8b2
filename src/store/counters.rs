//! Statements and commits the daemon has run against SQLite, counted by SQLite itself (a trace
//! callback on every statement's first step, a commit hook on the writer), for `/metrics` and the
//! benches that report the cost of a turn in round trips.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::sqlite::SqliteConnection;

static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static COMMITS: AtomicU64 = AtomicU64::new(0);

/// (statements run, write transactions committed) since the process started.
pub fn totals() -> (u64, u64) {
    (
        STATEMENTS.load(Ordering::Relaxed),
        COMMITS.load(Ordering::Relaxed),
    )
}

unsafe extern "C" fn on_trace(
    _event: std::os::raw::c_uint,
    _ctx: *mut std::os::raw::c_void,
    _stmt: *mut std::os::raw::c_void,
    sql: *mut std::os::raw::c_void,
) -> std::os::raw::c_int {
    // A statement a trigger runs comes as "-- TRIGGER name": part of the statement that fired it.
    // SAFETY: for SQLITE_TRACE_STMT the fourth argument is the statement's text, NUL-terminated.
    let first = unsafe { (sql as *const u8).as_ref().copied() };
    if first != Some(b'-') {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
    }
    0
}

/// Counts this connection's statements, and its commits when it is the writer.
pub async fn install(conn: &mut SqliteConnection, writer: bool) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    if writer {
        handle.set_commit_hook(|| {
            COMMITS.fetch_add(1, Ordering::Relaxed);
            true
        });
    }
    install_raw(handle.as_raw_handle());
    Ok(())
}

/// Counts the statements of a connection (one of sqlx's, or one of our own: `raw.rs`).
pub(super) fn install_raw(handle: std::ptr::NonNull<libsqlite3_sys::sqlite3>) {
    // SAFETY: the handle is a live connection; the callback touches only static counters.
    unsafe {
        libsqlite3_sys::sqlite3_trace_v2(
            handle.as_ptr(),
            libsqlite3_sys::SQLITE_TRACE_STMT as u32,
            Some(on_trace),
            std::ptr::null_mut(),
        );
    }
}
