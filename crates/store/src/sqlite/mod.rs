//! The embedded SQLite backend.
//!
//! One writer thread owns the only write connection and group-commits: it
//! drains every append waiting in its queue into a single transaction, so
//! many concurrent single-event requests share one fsync instead of queueing
//! for one each. Reads use a small pool of read-only connections, which WAL
//! mode lets run beside the writer.

mod compliance;
mod schema;
mod stream;
mod writer;

use crate::compliance::{FactsSnapshot, Record, RecordChange, RecordKind};
use crate::rows::{filter_clauses, to_i64, where_clause, EventRow, FilterValue, EVENT_COLUMNS};
use crate::tree::{self, StoredCheckpoint};
use crate::{Appended, Hash, Store, StoreError};
use async_trait::async_trait;
use patchaudit_domain::{
    EventFilter, NewEvent, PatchSystemState, PatchSystems, RecordedEvent, SystemSummary, Timestamp,
};
use patchaudit_proofs::NoteSigner;
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How hard SQLite works to make a commit survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `synchronous=FULL`: the WAL is fsynced at every commit, so an
    /// acknowledged append survives power loss as well as a crash. The default,
    /// because an audit ledger must not lose what it acknowledged.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a process crash but may lose the last
    /// commits on power loss. Only for benchmarks and throwaway ledgers.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The durability level; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// The most events the writer puts into one group commit.
    pub max_group_events: usize,
    /// The key that signs a checkpoint after each commit. Without one the
    /// store can read and prove but not append.
    pub signer: Option<Arc<NoteSigner>>,
    /// The WAL size, in pages, past which the checkpointer asks the writer
    /// to let the WAL start again from its beginning. Each restart holds
    /// appends for one short checkpoint, so a larger value means rarer
    /// pauses and a larger WAL file under sustained load. Default 65,536
    /// (256 MiB of 4 KiB pages): at the benchmark's saturation, about one
    /// pause a second.
    pub wal_restart_pages: i64,
    /// The WAL size, in pages, past which the writer checkpoints by itself
    /// after every commit (SQLite's `wal_autocheckpoint`), should the
    /// checkpointer thread fall behind. Default 262,144 (1 GiB).
    pub wal_backstop_pages: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            max_group_events: 50_000,
            signer: None,
            wal_restart_pages: 65_536,
            wal_backstop_pages: 262_144,
        }
    }
}

/// The ledger in an embedded SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: crate::group::Handle,
    readers: Mutex<Vec<Connection>>,
    /// Dropping it stops the checkpointer thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

const BUSY_TIMEOUT_MS: u64 = 5_000;

/// How much of the file each reader maps (address space, not memory).
const READER_MMAP_BYTES: i64 = 1 << 30;

/// How often the checkpointer copies the WAL into the database file while
/// appends keep coming.
const CHECKPOINT_BUSY_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// How often it looks when the WAL did not grow since its last pass.
const CHECKPOINT_IDLE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the thread that checkpoints the WAL in the background.
///
/// A checkpoint inside the writer's commit (SQLite's default) made every
/// thousandth commit copy megabytes, and stalled every append queued behind
/// it: a fifth of the writer's time in profiles. A PASSIVE checkpoint on
/// another connection runs beside the writer and never blocks it.
///
/// A PASSIVE checkpoint alone, however, never lets the WAL start again from
/// its beginning under steady appends: SQLite restarts the WAL only when a
/// write transaction begins with every frame already copied, and by the time
/// this thread has copied them the writer has appended more. The WAL then
/// grew to the backstop, and the writer's own checkpoint there stalled every
/// append for 16 to 45 ms, several times a second: that was the whole p99 of
/// the `concurrent` benchmark. So, once the WAL is past
/// [`SqliteOptions::wal_restart_pages`], this thread sets `restart`, and the
/// writer, between two groups, checkpoints the frames appended since this
/// thread's last pass. Its next transaction then restarts the WAL. The pause
/// is that short checkpoint, once per `wal_restart_pages` of WAL instead of
/// a longer one per backstop.
fn spawn_checkpointer(
    path: &Path,
    restart_pages: i64,
    restart: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let conn =
        open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(StoreError::Open)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("patchaudit-sqlite-checkpoint".into())
        .spawn(move || {
            let mut every = CHECKPOINT_BUSY_EVERY;
            let mut last_log = -1;
            // Runs until the store is dropped (the sender disconnects).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                // (busy, frames in the WAL, frames copied into the database)
                let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                });
                match pass {
                    Ok((log, copied)) => {
                        if log >= restart_pages && copied > 0 {
                            restart.store(true, std::sync::atomic::Ordering::Release);
                        }
                        every = if log == last_log {
                            CHECKPOINT_IDLE_EVERY
                        } else {
                            CHECKPOINT_BUSY_EVERY
                        };
                        last_log = log;
                    }
                    Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
                }
            }
        })
        .map_err(|e| StoreError::Open(format!("starting the checkpoint thread: {e}")))?;
    Ok(stop)
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, String> {
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| format!("{}: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger at `path`, switches it to WAL
    /// mode and applies any pending migrations.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(StoreError::Open)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open(format!(
                "{}: could not switch to WAL mode (got {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma())
            .map_err(|e| StoreError::Open(e.to_string()))?;
        // SQLite's default page cache (2 MiB) cannot hold the hot pages of six
        // indexes once the ledger has a few hundred thousand events; every
        // insert then reads pages back from the OS. 64 MiB keeps them resident.
        conn.pragma_update(None, "cache_size", -64 * 1024)
            .map_err(|e| StoreError::Open(e.to_string()))?;
        schema::migrate(&mut conn).map_err(StoreError::Open)?;
        // Checkpoints run on their own thread (below); the writer's automatic
        // checkpoint stays only as a backstop if that thread falls behind.
        conn.pragma_update(None, "wal_autocheckpoint", options.wal_backstop_pages)
            .map_err(|e| StoreError::Open(e.to_string()))?;
        if let Some(signer) = &options.signer {
            sign_backfilled_head(&mut conn, signer)?;
        }
        let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = writer::spawn(
            conn,
            options.max_group_events,
            options.signer,
            restart.clone(),
        )?;
        let checkpointer = spawn_checkpointer(&path, options.wal_restart_pages, restart)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
                _checkpointer: checkpointer,
            }),
        })
    }

    /// The file the ledger lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a short-lived write connection on the blocking thread
    /// pool. The stream's bookkeeping writes a few times a second at most,
    /// so it takes its own connection rather than a place in the ledger
    /// writer's queue; SQLite's write lock orders it with appends.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
                .map_err(StoreError::Unavailable)?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("write task failed: {e}")))?
    }

    /// Runs `f` on a pooled read-only connection on the blocking thread pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().map_err(|_| poisoned())?.pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = open_connection(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(StoreError::Unavailable)?;
                    c.pragma_update(None, "query_only", true)
                        .map_err(internal)?;
                    // Reading pages through a memory map saves a copy per
                    // page: a full verify reads every page of the ledger.
                    c.pragma_update(None, "mmap_size", READER_MMAP_BYTES)
                        .map_err(internal)?;
                    c
                }
            };
            let result = f(&conn);
            // A connection that saw an I/O error is dropped rather than reused.
            if !matches!(result, Err(StoreError::Unavailable(_))) {
                if let Ok(mut pool) = inner.readers.lock() {
                    pool.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

/// Checks the signing key against the ledger, and signs the first
/// checkpoint of a ledger whose tree was built by the schema-2 migration.
fn sign_backfilled_head(conn: &mut Connection, signer: &NoteSigner) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(internal)?;
    let latest = {
        let mut stmt = tx
            .prepare(
                "SELECT size, root, note, recorded_at FROM checkpoints ORDER BY size DESC LIMIT 1",
            )
            .map_err(internal)?;
        stmt.query_row([], row_to_checkpoint)
            .optional()
            .map_err(internal)?
            .transpose()?
    };
    tree::check_signer(signer, latest.as_ref())?;
    if latest.is_none() {
        let (size, subtrees, last): (i64, Vec<u8>, Option<i64>) = tx
            .query_row(
                "SELECT size, subtrees, last_recorded_at FROM ledger_head",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(internal)?;
        if size > 0 {
            let head = tree::decode_head(size, &subtrees)?;
            let root = head.root();
            tx.execute(
                "INSERT INTO checkpoints (size, root, note, recorded_at) VALUES (?, ?, ?, ?)",
                rusqlite::params![
                    size,
                    &root[..],
                    signer.sign_checkpoint(head.size(), &root),
                    last.unwrap_or(0)
                ],
            )
            .map_err(internal)?;
            tracing::info!(
                size,
                "signed the first checkpoint of a ledger migrated to the Merkle tree"
            );
        }
    }
    tx.commit().map_err(internal)
}

/// Reads a row of `size, root, note, recorded_at` from `checkpoints`.
fn row_to_checkpoint(r: &Row<'_>) -> rusqlite::Result<Result<StoredCheckpoint, StoreError>> {
    let root: Vec<u8> = r.get(1)?;
    Ok(crate::rows::stored_checkpoint(
        r.get(0)?,
        &root,
        r.get(2)?,
        Timestamp::from_micros(r.get(3)?),
    ))
}

/// A text column's bytes, borrowed from the row. They are not checked to
/// be UTF-8: the leaf encodes bytes, and any change shows in it.
fn opt_bytes<'r>(r: &'r Row<'_>, i: usize, seq: i64) -> Result<Option<&'r [u8]>, StoreError> {
    use rusqlite::types::ValueRef;
    match r.get_ref(i).map_err(internal)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(b) | ValueRef::Blob(b) => Ok(Some(b)),
        other => Err(StoreError::Corrupt(format!(
            "event seq {seq}: column {i} holds {:?}, not text",
            other.data_type()
        ))),
    }
}

fn bytes<'r>(r: &'r Row<'_>, i: usize, seq: i64) -> Result<&'r [u8], StoreError> {
    opt_bytes(r, i, seq)?
        .ok_or_else(|| StoreError::Corrupt(format!("event seq {seq}: column {i} is NULL")))
}

fn poisoned() -> StoreError {
    StoreError::Internal("connection pool lock poisoned".into())
}

pub(crate) fn internal(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(
            C::DatabaseBusy | C::DatabaseLocked | C::CannotOpen | C::SystemIoFailure | C::DiskFull,
        ) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Reads a row selected with [`EVENT_COLUMNS`].
fn row_to_event(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    let cves: Option<String> = row.get(12).map_err(internal)?;
    let reboot: Option<i64> = row.get(13).map_err(internal)?;
    EventRow {
        seq: row.get(0).map_err(internal)?,
        event_id: row.get(1).map_err(internal)?,
        patch_id: row.get(2).map_err(internal)?,
        system: row.get(3).map_err(internal)?,
        applied_at: row.get(4).map_err(internal)?,
        status: row.get(5).map_err(internal)?,
        package: row.get(6).map_err(internal)?,
        from_version: row.get(7).map_err(internal)?,
        to_version: row.get(8).map_err(internal)?,
        source: row.get(9).map_err(internal)?,
        actor: row.get(10).map_err(internal)?,
        detail: row.get(11).map_err(internal)?,
        cves: cves
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default(),
        reboot_required: reboot.map(|v| v != 0),
        change_ref: row.get(14).map_err(internal)?,
        recorded_at: row.get(15).map_err(internal)?,
        recorded_by: row.get(16).map_err(internal)?,
    }
    .into_event()
}

/// Builds the WHERE clause and its parameters for a filter.
fn filter_sql(filter: &EventFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let (conditions, params) = filter_clauses(filter)
        .into_iter()
        .map(|(cond, v)| {
            let v = match v {
                FilterValue::Text(s) => Value::Text(s),
                FilterValue::Int(i) | FilterValue::Micros(i) => Value::Integer(i),
            };
            (format!("{cond} ?"), v)
        })
        .unzip();
    (where_clause(conditions), params)
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(
        &self,
        batch: Vec<NewEvent>,
        recorded_by: &str,
    ) -> Result<Vec<Appended>, StoreError> {
        self.inner
            .writer
            .append(batch, recorded_by.to_owned())
            .await
    }

    async fn get(&self, seq: u64) -> Result<Option<RecordedEvent>, StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?"))
                .map_err(internal)?;
            let mut rows = stmt.query([seq]).map_err(internal)?;
            match rows.next().map_err(internal)? {
                Some(row) => Ok(Some(row_to_event(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(
        &self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 || filter.is_empty_range() {
            return Ok(Vec::new());
        }
        let (where_sql, mut params) = filter_sql(filter);
        params.push(rusqlite::types::Value::Integer(to_i64(limit as u64)));
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events {where_sql} ORDER BY seq LIMIT ?");
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql).map_err(internal)?;
            let mut rows = stmt.query(params_from_iter(params)).map_err(internal)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(internal)? {
                out.push(row_to_event(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn systems(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SystemSummary>, StoreError> {
        let after = after.unwrap_or("").to_owned();
        let limit = to_i64(limit as u64);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT system, last_applied_at, last_seq, n_success, n_failure, n_rolled_back \
                     FROM systems WHERE system > ? ORDER BY system LIMIT ?",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(rusqlite::params![after, limit], |r| {
                    Ok(SystemSummary {
                        system: r.get(0)?,
                        last_applied_at: Timestamp::from_micros(r.get(1)?),
                        last_seq: r.get::<_, i64>(2)? as u64,
                        success: r.get::<_, i64>(3)? as u64,
                        failure: r.get::<_, i64>(4)? as u64,
                        rolled_back: r.get::<_, i64>(5)? as u64,
                    })
                })
                .map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)
        })
        .await
    }

    async fn patch(&self, patch_id: &str) -> Result<PatchSystems, StoreError> {
        let patch_id = patch_id.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT system, status, applied_at, seq, attempts FROM patch_state \
                     WHERE patch_id = ? ORDER BY system",
                )
                .map_err(internal)?;
            let mut rows = stmt.query([&patch_id]).map_err(internal)?;
            let mut systems = Vec::new();
            while let Some(r) = rows.next().map_err(internal)? {
                let status: String = r.get(1).map_err(internal)?;
                systems.push(PatchSystemState {
                    system: r.get(0).map_err(internal)?,
                    status: status
                        .parse()
                        .map_err(|m| StoreError::Corrupt(format!("patch_state status {m}")))?,
                    applied_at: Timestamp::from_micros(r.get(2).map_err(internal)?),
                    seq: r.get::<_, i64>(3).map_err(internal)? as u64,
                    attempts: r.get::<_, i64>(4).map_err(internal)? as u64,
                });
            }
            Ok(PatchSystems { patch_id, systems })
        })
        .await
    }

    async fn len(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let next: Option<i64> = c
                .query_row("SELECT MAX(seq) + 1 FROM events", [], |r| r.get(0))
                .optional()
                .map_err(internal)?
                .flatten();
            Ok(next.unwrap_or(0) as u64)
        })
        .await
    }

    async fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT size, root, note, recorded_at FROM checkpoints ORDER BY size DESC LIMIT 1",
                )
                .map_err(internal)?;
            stmt.query_row([], row_to_checkpoint)
                .optional()
                .map_err(internal)?
                .transpose()
        })
        .await
    }

    async fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let from = to_i64(from_size);
        let limit = to_i64(limit as u64);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT size, root, note, recorded_at FROM checkpoints \
                     WHERE size >= ? ORDER BY size LIMIT ?",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(rusqlite::params![from, limit], row_to_checkpoint)
                .map_err(internal)?;
            rows.map(|r| r.map_err(internal)?).collect()
        })
        .await
    }

    async fn tree_hashes(&self, positions: &[u64]) -> Result<Vec<(u64, Hash)>, StoreError> {
        let positions = positions.to_vec();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT hash FROM tree_hashes WHERE position = ?")
                .map_err(internal)?;
            let mut out = Vec::with_capacity(positions.len());
            for p in positions {
                let p = to_i64(p);
                let found: Option<Vec<u8>> = stmt
                    .query_row([p], |r| r.get(0))
                    .optional()
                    .map_err(internal)?;
                if let Some(bytes) = found {
                    out.push(crate::rows::stored_hash(p, &bytes)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn tree_hash_range(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        let from = to_i64(from);
        let limit = to_i64(limit as u64);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT position, hash FROM tree_hashes WHERE position >= ? ORDER BY position LIMIT ?",
                )
                .map_err(internal)?;
            let mut rows = stmt.query(rusqlite::params![from, limit]).map_err(internal)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(internal)? {
                let bytes: &[u8] = match r.get_ref(1).map_err(internal)? {
                    rusqlite::types::ValueRef::Blob(b) => b,
                    _ => &[],
                };
                out.push(crate::rows::stored_hash(r.get(0).map_err(internal)?, bytes)?);
            }
            Ok(out)
        })
        .await
    }

    async fn leaf_hashes(&self, from: u64, limit: usize) -> Result<Vec<(u64, Hash)>, StoreError> {
        let from = to_i64(from);
        let limit = to_i64(limit as u64);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq >= ? ORDER BY seq LIMIT ?"
                ))
                .map_err(internal)?;
            let mut rows = stmt
                .query(rusqlite::params![from, limit])
                .map_err(internal)?;
            let mut out = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(100_000));
            let mut buf = Vec::with_capacity(1024);
            while let Some(r) = rows.next().map_err(internal)? {
                let seq: i64 = r.get(0).map_err(internal)?;
                let cves: Vec<&[u8]> = opt_bytes(r, 12, seq)?
                    .map(|s| s.split(|&b| b == b' ').collect())
                    .unwrap_or_default();
                let reboot: Option<i64> = r.get(13).map_err(internal)?;
                let status = std::str::from_utf8(bytes(r, 5, seq)?).unwrap_or("");
                let view = patchaudit_domain::LeafView {
                    seq: seq as u64,
                    recorded_at: r.get(15).map_err(internal)?,
                    recorded_by: bytes(r, 16, seq)?,
                    event_id: opt_bytes(r, 1, seq)?,
                    patch_id: bytes(r, 2, seq)?,
                    system: bytes(r, 3, seq)?,
                    applied_at: r.get(4).map_err(internal)?,
                    status: crate::rows::leaf_status(seq, status)?,
                    package: opt_bytes(r, 6, seq)?,
                    from_version: opt_bytes(r, 7, seq)?,
                    to_version: opt_bytes(r, 8, seq)?,
                    source: opt_bytes(r, 9, seq)?,
                    actor: opt_bytes(r, 10, seq)?,
                    detail: opt_bytes(r, 11, seq)?,
                    cves: &cves,
                    reboot_required: reboot.map(|v| v != 0),
                    change_ref: opt_bytes(r, 14, seq)?,
                };
                out.push((seq as u64, crate::rows::leaf_hash_of(&view, &mut buf)));
            }
            Ok(out)
        })
        .await
    }

    async fn put_records(
        &self,
        kind: RecordKind,
        changes: Vec<RecordChange>,
        actor: &str,
    ) -> Result<Vec<Record>, StoreError> {
        let path = self.inner.path.clone();
        let actor = actor.to_owned();
        // Records change rarely, so they take their own short-lived write
        // connection rather than a place in the ledger writer's queue;
        // SQLite's write lock orders them with appends.
        tokio::task::spawn_blocking(move || {
            let mut conn = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
                .map_err(StoreError::Unavailable)?;
            compliance::put_records(&mut conn, kind, changes, &actor)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("record task failed: {e}")))?
    }

    async fn records(
        &self,
        kind: RecordKind,
        as_of: Option<Timestamp>,
    ) -> Result<Vec<Record>, StoreError> {
        self.read(move |c| compliance::records(c, kind, as_of))
            .await
    }

    async fn record_history(&self, kind: RecordKind, id: &str) -> Result<Vec<Record>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| compliance::record_history(c, kind, &id))
            .await
    }

    async fn record_changes(
        &self,
        after_rev: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKind, Record)>, StoreError> {
        self.read(move |c| compliance::record_changes(c, after_rev, limit))
            .await
    }

    async fn pair_facts(&self, as_of: Option<Timestamp>) -> Result<FactsSnapshot, StoreError> {
        self.read(move |c| compliance::pair_facts(c, as_of, 0, None))
            .await
    }

    async fn pair_facts_at_size(&self, size: u64) -> Result<FactsSnapshot, StoreError> {
        self.read(move |c| compliance::pair_facts(c, None, 0, Some(size)))
            .await
    }

    async fn pair_facts_since(&self, changed_since: u64) -> Result<FactsSnapshot, StoreError> {
        self.read(move |c| compliance::pair_facts(c, None, changed_since, None))
            .await
    }

    async fn details(
        &self,
        seqs: &[u64],
    ) -> Result<std::collections::HashMap<u64, String>, StoreError> {
        let seqs: Vec<i64> = seqs.iter().filter_map(|s| i64::try_from(*s).ok()).collect();
        self.read(move |c| {
            let mut out = std::collections::HashMap::new();
            let mut stmt = c
                .prepare_cached("SELECT detail FROM events WHERE seq = ?")
                .map_err(internal)?;
            for seq in seqs {
                let d: Option<Option<String>> = stmt
                    .query_row([seq], |r| r.get(0))
                    .optional()
                    .map_err(internal)?;
                if let Some(Some(d)) = d {
                    out.insert(seq as u64, d);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await?;
        self.inner.writer.check_alive()
    }

    async fn cursors(&self) -> Result<Vec<crate::stream::Cursor>, StoreError> {
        self.read(stream::cursors).await
    }

    async fn save_cursor(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |c| stream::save_cursor(c, &name, position))
            .await
    }

    async fn add_dead_letter(
        &self,
        letter: crate::stream::NewDeadLetter,
    ) -> Result<u64, StoreError> {
        self.write(move |c| stream::add_dead_letter(c, &letter))
            .await
    }

    async fn dead_letters(
        &self,
        sink: Option<&str>,
    ) -> Result<Vec<crate::stream::DeadLetter>, StoreError> {
        let sink = sink.map(str::to_owned);
        self.read(move |c| stream::dead_letters(c, sink.as_deref()))
            .await
    }

    async fn remove_dead_letter(&self, id: u64) -> Result<bool, StoreError> {
        self.write(move |c| stream::remove_dead_letter(c, id)).await
    }

    async fn raise_alert(
        &self,
        key: &str,
        rule: &str,
        body: &str,
    ) -> Result<Option<crate::stream::Alert>, StoreError> {
        let (key, rule, body) = (key.to_owned(), rule.to_owned(), body.to_owned());
        self.write(move |c| stream::raise_alert(c, &key, &rule, &body))
            .await
    }

    async fn alerts(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::stream::Alert>, StoreError> {
        self.read(move |c| stream::alerts(c, after, limit)).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
