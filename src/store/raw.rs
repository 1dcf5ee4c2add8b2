//! Statements run straight on a SQLite handle, on the calling thread.
//!
//! sqlx runs every statement on its connection's own thread: a round trip there and back (two
//! thread wakeups) per statement, which was most of a turn's cost under load. Here a statement
//! runs where it is called:
//! - the group writer locks its sqlx connection's handle once per batch and runs the batch's
//!   statements here, prepared once per batch and finalized before the handle is given back
//!   (sqlx closes that connection later and must find no statement of ours open);
//! - the hot path's reads run on read-only connections of our own ([`Conn`]), which keep
//!   their prepared statements for their life.
//!
//! Parameters are numbered `?1`, `?2`, ... and bound by that number. Rows are read by column
//! name through [`Columns`], which sqlx's rows implement too, so one mapping function serves
//! both.

use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;
use std::path::Path;
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::Sqlite;
use sqlx::sqlite::SqliteRow;

use super::{Result, StoreError};

/// A value bound to a parameter.
#[derive(Clone, Copy, Debug)]
pub(super) enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(v)
    }
}

impl<'a, T> From<Option<T>> for Value<'a>
where
    T: Into<Value<'a>>,
{
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}

/// A locked connection handle with the statements prepared on it so far.
pub(super) struct Db {
    handle: NonNull<ffi::sqlite3>,
    /// Keyed by the SQL text's address: every statement here is a `'static` string.
    prepared: Vec<(usize, NonNull<ffi::sqlite3_stmt>)>,
}

impl Db {
    /// # Safety
    /// `handle` is an open connection that nothing else uses while the `Db` lives.
    pub(super) unsafe fn new(handle: NonNull<ffi::sqlite3>) -> Self {
        Self {
            handle,
            prepared: Vec::new(),
        }
    }

    /// Runs SQL without parameters or rows (BEGIN, COMMIT, ROLLBACK).
    pub(super) fn exec(&mut self, sql: &'static CStr) -> Result<()> {
        // SAFETY: a live handle and a NUL-terminated statement; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.handle.as_ptr(),
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        self.check(rc)
    }

    /// Runs a statement to its end; returns the rows it changed.
    pub(super) fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<u64> {
        self.run(sql, params, |_| ())?;
        // SAFETY: a live handle.
        let changed = unsafe { ffi::sqlite3_changes64(self.handle.as_ptr()) };
        Ok(changed.max(0) as u64)
    }

    /// Runs a statement to its end; the first column of its first row, if it gave one that is
    /// not NULL (`RETURNING id`).
    pub(super) fn query_i64(
        &mut self,
        sql: &'static str,
        params: &[Value<'_>],
    ) -> Result<Option<i64>> {
        let mut first = None;
        self.run(sql, params, |stmt| {
            if first.is_none() {
                // SAFETY: the statement has a row; column 0 exists for a statement that gives one.
                unsafe {
                    if ffi::sqlite3_column_type(stmt, 0) != ffi::SQLITE_NULL {
                        first = Some(ffi::sqlite3_column_int64(stmt, 0));
                    }
                }
            }
        })?;
        Ok(first)
    }

    /// Runs a query; each row mapped by `map`.
    pub(super) fn query_map<T>(
        &mut self,
        sql: &'static str,
        params: &[Value<'_>],
        mut map: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut rows = Vec::new();
        let mut failed = None;
        self.run(sql, params, |stmt| {
            if failed.is_none() {
                match map(&Row::new(stmt)) {
                    Ok(row) => rows.push(row),
                    Err(e) => failed = Some(e),
                }
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// The rowid of the last row inserted on this connection.
    pub(super) fn last_insert_rowid(&self) -> i64 {
        // SAFETY: a live handle.
        unsafe { ffi::sqlite3_last_insert_rowid(self.handle.as_ptr()) }
    }

    /// Whether a transaction is open.
    pub(super) fn in_transaction(&self) -> bool {
        // SAFETY: a live handle.
        unsafe { ffi::sqlite3_get_autocommit(self.handle.as_ptr()) == 0 }
    }

    /// Binds, steps to the end (calling `row` for each row), and resets the statement.
    fn run(
        &mut self,
        sql: &'static str,
        params: &[Value<'_>],
        mut row: impl FnMut(*mut ffi::sqlite3_stmt),
    ) -> Result<()> {
        let stmt = self.prepare(sql)?.as_ptr();
        let outcome = (|| {
            for (i, value) in params.iter().enumerate() {
                let n = (i + 1) as c_int;
                // SAFETY: a prepared statement; text and blobs are bound SQLITE_STATIC and
                // outlive the statement's use, since the bindings are cleared below before
                // `params` goes.
                let rc = unsafe {
                    match *value {
                        Value::Null => ffi::sqlite3_bind_null(stmt, n),
                        Value::Int(v) => ffi::sqlite3_bind_int64(stmt, n, v),
                        Value::Real(v) => ffi::sqlite3_bind_double(stmt, n, v),
                        Value::Text(v) => ffi::sqlite3_bind_text64(
                            stmt,
                            n,
                            v.as_ptr().cast(),
                            v.len() as u64,
                            ffi::SQLITE_STATIC(),
                            ffi::SQLITE_UTF8 as u8,
                        ),
                        Value::Blob(v) => ffi::sqlite3_bind_blob64(
                            stmt,
                            n,
                            v.as_ptr().cast(),
                            v.len() as u64,
                            ffi::SQLITE_STATIC(),
                        ),
                    }
                };
                self.check(rc)?;
            }
            loop {
                // SAFETY: a prepared statement with its parameters bound.
                match unsafe { ffi::sqlite3_step(stmt) } {
                    ffi::SQLITE_ROW => row(stmt),
                    ffi::SQLITE_DONE => return Ok(()),
                    rc => return self.check(rc),
                }
            }
        })();
        // SAFETY: a prepared statement; afterwards it holds no binding and no open read.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        outcome
    }

    fn prepare(&mut self, sql: &'static str) -> Result<NonNull<ffi::sqlite3_stmt>> {
        let key = sql.as_ptr() as usize;
        if let Some((_, stmt)) = self.prepared.iter().find(|(k, _)| *k == key) {
            return Ok(*stmt);
        }
        let mut stmt = std::ptr::null_mut();
        // SAFETY: a live handle; the text and its length are a valid str.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.handle.as_ptr(),
                sql.as_ptr().cast(),
                sql.len() as c_int,
                0,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        self.check(rc)?;
        let stmt = NonNull::new(stmt)
            .ok_or_else(|| StoreError::Sqlite(format!("no statement in {sql:?}")))?;
        self.prepared.push((key, stmt));
        Ok(stmt)
    }

    /// The error SQLite reports for `rc`, if it is one.
    fn check(&self, rc: c_int) -> Result<()> {
        if matches!(rc, ffi::SQLITE_OK | ffi::SQLITE_ROW | ffi::SQLITE_DONE) {
            return Ok(());
        }
        // SAFETY: a live handle; the message is NUL-terminated and copied at once.
        let (code, message) = unsafe {
            let h = self.handle.as_ptr();
            let message = CStr::from_ptr(ffi::sqlite3_errmsg(h))
                .to_string_lossy()
                .into_owned();
            (ffi::sqlite3_extended_errcode(h), message)
        };
        Err(
            if code == ffi::SQLITE_CONSTRAINT_UNIQUE || code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY {
                StoreError::Conflict(format!("already exists ({message})"))
            } else {
                StoreError::Sqlite(format!("{message} (code {code})"))
            },
        )
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for (_, stmt) in self.prepared.drain(..) {
            // SAFETY: each statement was prepared here and is finalized once.
            unsafe {
                ffi::sqlite3_finalize(stmt.as_ptr());
            }
        }
    }
}

/// A connection of our own (the inline readers' and the checkpoint task's), with the
/// statements it prepared.
pub(super) struct Conn {
    /// Dropped (its statements finalized) before the handle is closed.
    db: Option<Db>,
    handle: NonNull<ffi::sqlite3>,
}

// SAFETY: a SQLite handle may move between threads (SQLite is built thread-safe); a `Conn`
// is used by one thread at a time (`&mut`).
unsafe impl Send for Conn {}

impl Conn {
    /// Opens `path` read-only.
    pub(super) fn open_read_only(path: &Path) -> Result<Self> {
        Self::open(path, ffi::SQLITE_OPEN_READONLY)
    }

    /// Opens `path` to read and write (an existing file).
    pub(super) fn open_read_write(path: &Path) -> Result<Self> {
        Self::open(path, ffi::SQLITE_OPEN_READWRITE)
    }

    /// Opens `path` in `mode`, waiting up to [`BUSY`](super::BUSY) for a lock.
    fn open(path: &Path, mode: c_int) -> Result<Self> {
        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| StoreError::Sqlite(format!("{} has a NUL in its name", path.display())))?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name; the handle comes back even on failure (closed below).
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                name.as_ptr(),
                &mut handle,
                mode | ffi::SQLITE_OPEN_NOMUTEX,
                std::ptr::null(),
            )
        };
        let handle = NonNull::new(handle)
            .ok_or_else(|| StoreError::Sqlite("out of memory opening the database".into()))?;
        // SAFETY: the handle is ours alone.
        let mut conn = Self {
            db: Some(unsafe { Db::new(handle) }),
            handle,
        };
        conn.db().check(rc)?;
        // SAFETY: a live handle.
        unsafe {
            ffi::sqlite3_busy_timeout(handle.as_ptr(), super::BUSY.as_millis() as c_int);
            ffi::sqlite3_extended_result_codes(handle.as_ptr(), 1);
        }
        super::counters::install_raw(handle);
        Ok(conn)
    }

    pub(super) fn db(&mut self) -> &mut Db {
        self.db
            .as_mut()
            .expect("a connection has its statements until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.db = None;
        // SAFETY: every statement is finalized; the handle is closed once.
        unsafe {
            ffi::sqlite3_close(self.handle.as_ptr());
        }
    }
}

/// One row of a query, while it is the current one.
pub(super) struct Row<'s> {
    stmt: *mut ffi::sqlite3_stmt,
    /// Where the next column looked up by name is tried first: mappers mostly read the
    /// columns in the order the query names them, so a lookup is usually one comparison.
    next: std::cell::Cell<c_int>,
    _row: PhantomData<&'s ()>,
}

impl Row<'_> {
    fn new(stmt: *mut ffi::sqlite3_stmt) -> Self {
        Self {
            stmt,
            next: std::cell::Cell::new(0),
            _row: PhantomData,
        }
    }

    fn index(&self, name: &str) -> Result<c_int> {
        // SAFETY: a statement with a current row.
        let count = unsafe { ffi::sqlite3_column_count(self.stmt) };
        let start = self.next.get();
        let found = (start..count).chain(0..start.min(count)).find(|&i| {
            // SAFETY: `i` is a column of the statement; its name is NUL-terminated.
            let column = unsafe { ffi::sqlite3_column_name(self.stmt, i) };
            !column.is_null() && unsafe { CStr::from_ptr(column) }.to_bytes() == name.as_bytes()
        });
        match found {
            Some(i) => {
                self.next.set(i + 1);
                Ok(i)
            }
            None => Err(StoreError::Sqlite(format!("no column {name:?} in the row"))),
        }
    }

    fn is_null(&self, i: c_int) -> bool {
        // SAFETY: a statement with a current row and a column `i`.
        unsafe { ffi::sqlite3_column_type(self.stmt, i) == ffi::SQLITE_NULL }
    }

    fn bytes(&self, i: c_int) -> &[u8] {
        // SAFETY: as above; the bytes live until the next step, longer than this borrow.
        unsafe {
            let data = ffi::sqlite3_column_blob(self.stmt, i);
            let len = ffi::sqlite3_column_bytes(self.stmt, i);
            if data.is_null() || len <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(data.cast(), len as usize)
            }
        }
    }
}

/// A value read from a column, by sqlx or from a raw row.
pub(super) trait Column:
    Sized + for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>
{
    fn read(row: &Row<'_>, i: c_int) -> Result<Self>;
}

fn null_column(i: c_int) -> StoreError {
    StoreError::Sqlite(format!("column {i} is NULL"))
}

impl Column for i64 {
    fn read(row: &Row<'_>, i: c_int) -> Result<Self> {
        if row.is_null(i) {
            return Err(null_column(i));
        }
        // SAFETY: a current row with a column `i`.
        Ok(unsafe { ffi::sqlite3_column_int64(row.stmt, i) })
    }
}

impl Column for f64 {
    fn read(row: &Row<'_>, i: c_int) -> Result<Self> {
        if row.is_null(i) {
            return Err(null_column(i));
        }
        // SAFETY: as above.
        Ok(unsafe { ffi::sqlite3_column_double(row.stmt, i) })
    }
}

impl Column for String {
    fn read(row: &Row<'_>, i: c_int) -> Result<Self> {
        if row.is_null(i) {
            return Err(null_column(i));
        }
        String::from_utf8(row.bytes(i).to_vec())
            .map_err(|_| StoreError::Sqlite(format!("column {i} is not UTF-8 text")))
    }
}

impl Column for Vec<u8> {
    fn read(row: &Row<'_>, i: c_int) -> Result<Self> {
        Ok(row.bytes(i).to_vec())
    }
}

impl<T: Column> Column for Option<T> {
    fn read(row: &Row<'_>, i: c_int) -> Result<Self> {
        if row.is_null(i) {
            Ok(None)
        } else {
            T::read(row, i).map(Some)
        }
    }
}

/// A row's columns by name: a raw row, or one sqlx gave.
pub(super) trait Columns {
    fn column<T: Column>(&self, name: &str) -> Result<T>;
}

impl Columns for Row<'_> {
    fn column<T: Column>(&self, name: &str) -> Result<T> {
        T::read(self, self.index(name)?)
    }
}

impl Columns for SqliteRow {
    fn column<T: Column>(&self, name: &str) -> Result<T> {
        Ok(sqlx::Row::try_get::<T, &str>(self, name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// Parameters of each kind go in and come back; a constraint and a bad statement give
    /// errors that say what failed; a failed statement leaves the next one working.
    #[tokio::test]
    async fn statements_bind_step_and_fail_clearly() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let mut handle = conn.lock_handle().await.unwrap();
        // SAFETY: the handle stays locked while `db` lives.
        let mut db = unsafe { Db::new(handle.as_raw_handle()) };
        const CREATE: &str =
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b REAL, c TEXT UNIQUE, d BLOB)";
        db.execute(CREATE, &[]).unwrap();
        const INSERT: &str = "INSERT INTO t (a, b, c, d) VALUES (?1, ?2, ?3, ?4) RETURNING id";
        let bytes: &[u8] = &[0, 1, 2];
        let id = db
            .query_i64(INSERT, &[7.into(), 1.5.into(), "x'y".into(), bytes.into()])
            .unwrap();
        assert_eq!(id, Some(1));
        assert_eq!(db.last_insert_rowid(), 1);
        let none: Option<&str> = None;
        let id = db
            .query_i64(
                INSERT,
                &[Value::Null, Value::Null, none.into(), Value::Null],
            )
            .unwrap();
        assert_eq!(id, Some(2));
        const CHECK: &str = "SELECT COUNT(*) FROM t WHERE a = ?1 AND b = ?2 AND c = ?3 AND d = ?4";
        let found = db
            .query_i64(CHECK, &[7.into(), 1.5.into(), "x'y".into(), bytes.into()])
            .unwrap();
        assert_eq!(found, Some(1));
        let again = db.query_i64(INSERT, &[1.into(), 1.0.into(), "x'y".into(), Value::Null]);
        assert!(
            matches!(&again, Err(StoreError::Conflict(m)) if m.contains("UNIQUE")),
            "{again:?}"
        );
        let bad = db.execute("INSERT INTO nowhere VALUES (1)", &[]);
        assert!(
            matches!(&bad, Err(StoreError::Sqlite(m)) if m.contains("nowhere")),
            "{bad:?}"
        );
        db.exec(c"BEGIN").unwrap();
        assert!(db.in_transaction());
        assert_eq!(
            db.execute("DELETE FROM t WHERE a = ?1", &[7.into()])
                .unwrap(),
            1
        );
        db.exec(c"ROLLBACK").unwrap();
        assert!(!db.in_transaction());
        let count = db.query_i64("SELECT COUNT(*) FROM t", &[]).unwrap();
        assert_eq!(count, Some(2));
        // Columns by name: in order, out of order, twice, and one the row does not have.
        let rows = db
            .query_map("SELECT id, a, c FROM t ORDER BY id", &[], |row| {
                let a: Option<i64> = row.column("a")?;
                let id: i64 = row.column("id")?;
                let c: Option<String> = row.column("c")?;
                let again: i64 = row.column("id")?;
                assert_eq!(id, again);
                Ok((id, a, c))
            })
            .unwrap();
        assert_eq!(
            rows,
            vec![(1, Some(7), Some("x'y".into())), (2, None, None)]
        );
        let missing = db.query_map("SELECT id FROM t", &[], |row| row.column::<i64>("a"));
        assert!(
            matches!(&missing, Err(StoreError::Sqlite(m)) if m.contains("no column \"a\"")),
            "{missing:?}"
        );
        drop(db);
        drop(handle);
        // Every statement was finalized: the connection closes cleanly.
        conn.close().await.unwrap();
    }
}
