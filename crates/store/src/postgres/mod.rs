//! The PostgreSQL backend, for production and for several server instances
//! sharing one ledger.
//!
//! Writes go through one writer task per instance (group commit) and one
//! sequencer row shared by all instances (see `writer.rs`). Reads use a
//! connection pool. When PostgreSQL goes away, operations fail with
//! [`StoreError::Unavailable`] (an HTTP 503) and the pool reconnects by
//! itself once it is back.

mod compliance;
mod schema;
mod stream;
mod writer;

use crate::compliance::{FactsSnapshot, Record, RecordChange, RecordKind};
use crate::rows::{filter_clauses, to_i64, where_clause, EventRow, FilterValue, EVENT_COLUMNS};
use crate::tree::{self, StoredCheckpoint};
use crate::{Appended, Hash, Store, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use patchaudit_domain::{
    EventFilter, NewEvent, PatchSystemState, PatchSystems, RecordedEvent, SystemSummary, Timestamp,
};
use patchaudit_proofs::NoteSigner;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

pub use schema::current_version;

/// Settings of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// A schema to use instead of the connection's default `search_path`;
    /// created if missing. Tests use one schema each.
    pub schema: Option<String>,
    /// The most connections in the pool.
    pub pool_size: usize,
    /// The most events the writer puts into one group commit.
    pub max_group_events: usize,
    /// How long to wait for a connection before answering "unavailable".
    pub connect_timeout: Duration,
    /// The key that signs a checkpoint after each commit. Without one the
    /// store can read and prove but not append. Every instance writing one
    /// ledger must use the same key.
    pub signer: Option<Arc<NoteSigner>>,
    /// Opens the ledger only to read it, as an auditor does: no migration,
    /// no partition maintenance, and every transaction read-only
    /// (`default_transaction_read_only`), so a role with only `SELECT` on
    /// the tables suffices. The schema must already be at this build's
    /// version.
    pub read_only: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: None,
            pool_size: 16,
            max_group_events: 50_000,
            connect_timeout: Duration::from_secs(5),
            signer: None,
            read_only: false,
        }
    }
}

/// The ledger in PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    writer: crate::group::Handle,
    maintenance: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.maintenance.abort();
    }
}

/// Converts a ledger timestamp for PostgreSQL.
pub(crate) fn to_datetime(t: Timestamp) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(t.as_micros()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Classifies a database error: lost connections and a server that is
/// starting or shutting down are "unavailable" (retry later); the rest is internal.
fn db_error(e: &tokio_postgres::Error) -> StoreError {
    if e.is_closed() {
        return StoreError::Unavailable(format!("the connection to PostgreSQL was lost: {e}"));
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
            return StoreError::Unavailable(format!("PostgreSQL: {}", db.message()));
        }
        return StoreError::Internal(format!("PostgreSQL {code}: {}", db.message()));
    }
    // No database error and not closed: an I/O error on the socket.
    StoreError::Unavailable(format!("PostgreSQL: {}", with_causes(e)))
}

/// An error with its chain of causes, on one line: tokio-postgres puts the
/// useful part ("Connection refused") in the source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_str = c.to_string();
        if !s.contains(&c_str) {
            s.push_str(": ");
            s.push_str(&c_str);
        }
        cur = c.source();
    }
    s
}

/// The message of a store error without its category prefix.
fn bare(e: StoreError) -> String {
    match e {
        StoreError::Unavailable(m)
        | StoreError::Internal(m)
        | StoreError::Open(m)
        | StoreError::Corrupt(m) => m,
        other => other.to_string(),
    }
}

fn pool_error(e: &deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
    }
}

fn pg_error(e: &writer::GroupError) -> StoreError {
    match e {
        writer::GroupError::Pool(p) => pool_error(p),
        writer::GroupError::Db(d) => db_error(d),
        writer::GroupError::Store(e) => match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            other => StoreError::Internal(other.to_string()),
        },
    }
}

/// Describes where a URL points, without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default database)");
    let user = config.get_user().unwrap_or("(default user)");
    format!("{user}@{host}:{port}/{db}")
}

fn valid_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL), applies any
    /// pending migrations and starts the writer.
    ///
    /// Errors are one clear line naming user, host, port and database (never
    /// the password): a malformed URL, an unreachable server, or missing
    /// permissions.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Open(format!("invalid PostgreSQL URL: {e}")))?;
        config.connect_timeout(options.connect_timeout);
        config.application_name("patchaudit");
        let target = describe(&config);
        if let Some(schema) = &options.schema {
            if !valid_schema_name(schema) {
                return Err(StoreError::Open(format!(
                    "schema {schema:?} must be 1-63 lower-case letters, digits or underscores"
                )));
            }
        }
        let mut server_options = Vec::new();
        if let Some(schema) = &options.schema {
            server_options.push(format!("-c search_path={schema}"));
        }
        if options.read_only {
            server_options.push("-c default_transaction_read_only=on".to_owned());
        }
        if !server_options.is_empty() {
            // These settings add to the URL's own `options`, which may
            // already choose the search_path.
            let mut all: Vec<String> = config
                .get_options()
                .map(str::to_owned)
                .into_iter()
                .collect();
            all.extend(server_options);
            config.options(all.join(" "));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Open(format!("{target}: {e}")))?;
        {
            let mut client = pool.get().await.map_err(|e| {
                StoreError::Open(format!(
                    "cannot connect to PostgreSQL at {target}: {}",
                    bare(pool_error(&e))
                ))
            })?;
            let asked = client
                .query_opt("SELECT MAX(version) FROM schema_migrations", &[])
                .await;
            let found: Option<i32> = match &asked {
                Ok(row) => row.as_ref().and_then(|r| r.get(0)),
                Err(_) => None,
            };
            if let Some(v) = found {
                if v > current_version() {
                    return Err(StoreError::Open(format!(
                        "{target}: the database has schema version {v}, but this build only knows up to {}; upgrade patchaudit",
                        current_version()
                    )));
                }
            }
            if options.read_only {
                // A schema without the table is simply not migrated; any
                // other failure (permissions, say) is worth its own words.
                let unreadable = asked.as_ref().err().filter(|e| {
                    e.code() != Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                });
                if let Some(e) = unreadable {
                    return Err(StoreError::Open(format!(
                        "{target}: cannot read the schema version (schema_migrations): {}",
                        bare(db_error(e))
                    )));
                }
                if found != Some(current_version()) {
                    let has = found.map_or_else(
                        || "no patchaudit schema".to_owned(),
                        |v| format!("schema version {v}"),
                    );
                    return Err(StoreError::Open(format!(
                        "{target}: the database has {has}, and this build reads version {}; a read-only open does not migrate, so run `patchaudit serve` on it once with a role that may change the schema",
                        current_version()
                    )));
                }
            } else {
                schema::migrate(&mut client, options.schema.as_deref())
                    .await
                    .map_err(|e| {
                        StoreError::Open(format!("{target}: migrating: {}", bare(db_error(&e))))
                    })?;
            }
        }
        // A read-only open cannot sign; its appends fail in the database.
        if let Some(signer) = options.signer.as_ref().filter(|_| !options.read_only) {
            sign_backfilled_head(&pool, signer)
                .await
                .map_err(|e| StoreError::Open(format!("{target}: {}", bare(e))))?;
        }
        let writer = writer::spawn(pool.clone(), options.max_group_events, options.signer);
        let maint_pool = pool.clone();
        let read_only = options.read_only;
        let maintenance = tokio::spawn(async move {
            if read_only {
                // Creating partitions is a write; a reader leaves it to the
                // servers.
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Ok(client) = maint_pool.get().await {
                    if let Err(e) = schema::ensure_partitions(&client, Utc::now()).await {
                        tracing::warn!(error = %db_error(&e), "could not create upcoming partitions");
                    }
                }
            }
        })
        .abort_handle();
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                writer,
                maintenance,
            }),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(|e| pool_error(&e))
    }
}

/// Checks the signing key against the ledger, and signs the first
/// checkpoint of a ledger whose tree was built by the schema-2 migration.
async fn sign_backfilled_head(pool: &Pool, signer: &NoteSigner) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(|e| pool_error(&e))?;
    let tx = client.transaction().await.map_err(|e| db_error(&e))?;
    let head = tx
        .query_one(
            "SELECT next_seq, subtrees, last_recorded_at FROM ledger_head FOR UPDATE",
            &[],
        )
        .await
        .map_err(|e| db_error(&e))?;
    let latest = tx
        .query_opt(
            "SELECT size, root, note, recorded_at FROM checkpoints ORDER BY size DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| db_error(&e))?
        .map(|r| row_to_checkpoint(&r))
        .transpose()?;
    tree::check_signer(signer, latest.as_ref())?;
    let size: i64 = head.get(0);
    if latest.is_none() && size > 0 {
        let subtrees: Vec<u8> = head.get(1);
        let last: Option<DateTime<Utc>> = head.get(2);
        let tree_head = tree::decode_head(size, &subtrees)?;
        let root = tree_head.root();
        tx.execute(
            "INSERT INTO checkpoints (size, root, note, recorded_at) VALUES ($1, $2, $3, $4)",
            &[
                &size,
                &root.as_slice(),
                &signer.sign_checkpoint(tree_head.size(), &root),
                &last.unwrap_or_else(Utc::now),
            ],
        )
        .await
        .map_err(|e| db_error(&e))?;
        tracing::info!(
            size,
            "signed the first checkpoint of a ledger migrated to the Merkle tree"
        );
    }
    tx.commit().await.map_err(|e| db_error(&e))
}

fn row_to_checkpoint(r: &tokio_postgres::Row) -> Result<StoredCheckpoint, StoreError> {
    let recorded_at: DateTime<Utc> = r.get(3);
    crate::rows::stored_checkpoint(
        r.get(0),
        r.get::<_, &[u8]>(1),
        r.get(2),
        Timestamp::from_micros(micros(recorded_at)),
    )
}

fn row_to_event(r: &tokio_postgres::Row) -> Result<RecordedEvent, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Corrupt(format!("unreadable event row: {e}"));
    EventRow {
        seq: r.try_get(0).map_err(get)?,
        event_id: r.try_get(1).map_err(get)?,
        patch_id: r.try_get(2).map_err(get)?,
        system: r.try_get(3).map_err(get)?,
        applied_at: micros(r.try_get(4).map_err(get)?),
        status: r.try_get(5).map_err(get)?,
        package: r.try_get(6).map_err(get)?,
        from_version: r.try_get(7).map_err(get)?,
        to_version: r.try_get(8).map_err(get)?,
        source: r.try_get(9).map_err(get)?,
        actor: r.try_get(10).map_err(get)?,
        detail: r.try_get(11).map_err(get)?,
        cves: r
            .try_get::<_, Option<Vec<String>>>(12)
            .map_err(get)?
            .unwrap_or_default(),
        reboot_required: r.try_get(13).map_err(get)?,
        change_ref: r.try_get(14).map_err(get)?,
        recorded_at: micros(r.try_get(15).map_err(get)?),
        recorded_by: r.try_get(16).map_err(get)?,
    }
    .into_event()
}

/// A query parameter of any of the types filters use.
enum Param {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
}

impl Param {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Int(i) => i,
            Param::Time(t) => t,
        }
    }
}

fn filter_sql(filter: &EventFilter) -> (String, Vec<Param>) {
    let (conditions, params) = filter_clauses(filter)
        .into_iter()
        .enumerate()
        .map(|(i, (cond, v))| {
            let p = match v {
                FilterValue::Text(s) => Param::Text(s),
                FilterValue::Int(n) => Param::Int(n),
                FilterValue::Micros(m) => Param::Time(to_datetime(Timestamp::from_micros(m))),
            };
            (format!("{cond} ${}", i + 1), p)
        })
        .unzip();
    (where_clause(conditions), params)
}

#[async_trait]
impl Store for PgStore {
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
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq = $1"
            ))
            .await
            .map_err(|e| db_error(&e))?;
        let row = client
            .query_opt(&stmt, &[&seq])
            .await
            .map_err(|e| db_error(&e))?;
        row.as_ref().map(row_to_event).transpose()
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
        params.push(Param::Int(to_i64(limit as u64)));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events {where_sql} ORDER BY seq LIMIT ${}",
            params.len()
        );
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| db_error(&e))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
        let rows = client.query(&stmt, &refs).await.map_err(|e| db_error(&e))?;
        rows.iter().map(row_to_event).collect()
    }

    async fn systems(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SystemSummary>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT system, last_applied_at, last_seq, n_success, n_failure, n_rolled_back \
                 FROM systems WHERE system > $1 ORDER BY system LIMIT $2",
            )
            .await
            .map_err(|e| db_error(&e))?;
        let rows = client
            .query(&stmt, &[&after.unwrap_or(""), &to_i64(limit as u64)])
            .await
            .map_err(|e| db_error(&e))?;
        Ok(rows
            .iter()
            .map(|r| SystemSummary {
                system: r.get(0),
                last_applied_at: Timestamp::from_micros(micros(r.get(1))),
                last_seq: r.get::<_, i64>(2) as u64,
                success: r.get::<_, i64>(3) as u64,
                failure: r.get::<_, i64>(4) as u64,
                rolled_back: r.get::<_, i64>(5) as u64,
            })
            .collect())
    }

    async fn patch(&self, patch_id: &str) -> Result<PatchSystems, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT system, status, applied_at, seq, attempts FROM patch_state \
                 WHERE patch_id = $1 ORDER BY system",
            )
            .await
            .map_err(|e| db_error(&e))?;
        let rows = client
            .query(&stmt, &[&patch_id])
            .await
            .map_err(|e| db_error(&e))?;
        let mut systems = Vec::with_capacity(rows.len());
        for r in &rows {
            let status: String = r.get(1);
            systems.push(PatchSystemState {
                system: r.get(0),
                status: status
                    .parse()
                    .map_err(|m| StoreError::Corrupt(format!("patch_state status {m}")))?,
                applied_at: Timestamp::from_micros(micros(r.get(2))),
                seq: r.get::<_, i64>(3) as u64,
                attempts: r.get::<_, i64>(4) as u64,
            });
        }
        Ok(PatchSystems {
            patch_id: patch_id.to_owned(),
            systems,
        })
    }

    async fn len(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT next_seq FROM ledger_head", &[])
            .await
            .map_err(|e| db_error(&e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT size, root, note, recorded_at FROM checkpoints ORDER BY size DESC LIMIT 1",
            )
            .await
            .map_err(|e| db_error(&e))?;
        let row = client
            .query_opt(&stmt, &[])
            .await
            .map_err(|e| db_error(&e))?;
        row.as_ref().map(row_to_checkpoint).transpose()
    }

    async fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT size, root, note, recorded_at FROM checkpoints \
                 WHERE size >= $1 ORDER BY size LIMIT $2",
            )
            .await
            .map_err(|e| db_error(&e))?;
        let rows = client
            .query(&stmt, &[&to_i64(from_size), &to_i64(limit as u64)])
            .await
            .map_err(|e| db_error(&e))?;
        rows.iter().map(row_to_checkpoint).collect()
    }

    async fn tree_hashes(&self, positions: &[u64]) -> Result<Vec<(u64, Hash)>, StoreError> {
        let positions: Vec<i64> = positions.iter().map(|&p| to_i64(p)).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT position, hash FROM tree_hashes WHERE position = ANY($1::int8[])",
            )
            .await
            .map_err(|e| db_error(&e))?;
        let rows = client
            .query(&stmt, &[&positions])
            .await
            .map_err(|e| db_error(&e))?;
        rows.iter()
            .map(|r| crate::rows::stored_hash(r.get(0), r.get::<_, &[u8]>(1)))
            .collect()
    }

    async fn tree_hash_range(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT position, hash FROM tree_hashes WHERE position >= $1 ORDER BY position LIMIT $2",
            )
            .await
            .map_err(|e| db_error(&e))?;
        let rows = client
            .query(&stmt, &[&to_i64(from), &to_i64(limit as u64)])
            .await
            .map_err(|e| db_error(&e))?;
        rows.iter()
            .map(|r| crate::rows::stored_hash(r.get(0), r.get::<_, &[u8]>(1)))
            .collect()
    }

    async fn leaf_hashes(&self, from: u64, limit: usize) -> Result<Vec<(u64, Hash)>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq >= $1 ORDER BY seq LIMIT $2"
            ))
            .await
            .map_err(|e| db_error(&e))?;
        let rows = client
            .query(&stmt, &[&to_i64(from), &to_i64(limit as u64)])
            .await
            .map_err(|e| db_error(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut buf = Vec::with_capacity(1024);
        for r in &rows {
            let get = |e: tokio_postgres::Error| {
                StoreError::Corrupt(format!("unreadable event row: {e}"))
            };
            let seq: i64 = r.try_get(0).map_err(get)?;
            let cves: Option<Vec<&str>> = r.try_get(12).map_err(get)?;
            let cves: Vec<&[u8]> = cves
                .unwrap_or_default()
                .into_iter()
                .map(str::as_bytes)
                .collect();
            let text = |i: usize| -> Result<&[u8], StoreError> {
                r.try_get::<_, &str>(i).map(str::as_bytes).map_err(get)
            };
            let opt = |i: usize| -> Result<Option<&[u8]>, StoreError> {
                r.try_get::<_, Option<&str>>(i)
                    .map(|o| o.map(str::as_bytes))
                    .map_err(get)
            };
            let view = patchaudit_domain::LeafView {
                seq: seq as u64,
                recorded_at: micros(r.try_get(15).map_err(get)?),
                recorded_by: text(16)?,
                event_id: opt(1)?,
                patch_id: text(2)?,
                system: text(3)?,
                applied_at: micros(r.try_get(4).map_err(get)?),
                status: crate::rows::leaf_status(seq, r.try_get(5).map_err(get)?)?,
                package: opt(6)?,
                from_version: opt(7)?,
                to_version: opt(8)?,
                source: opt(9)?,
                actor: opt(10)?,
                detail: opt(11)?,
                cves: &cves,
                reboot_required: r.try_get(13).map_err(get)?,
                change_ref: opt(14)?,
            };
            out.push((seq as u64, crate::rows::leaf_hash_of(&view, &mut buf)));
        }
        Ok(out)
    }

    async fn put_records(
        &self,
        kind: RecordKind,
        changes: Vec<RecordChange>,
        actor: &str,
    ) -> Result<Vec<Record>, StoreError> {
        let mut client = self.client().await?;
        compliance::put_records(&mut client, kind, changes, actor).await
    }

    async fn records(
        &self,
        kind: RecordKind,
        as_of: Option<Timestamp>,
    ) -> Result<Vec<Record>, StoreError> {
        let client = self.client().await?;
        compliance::records(&client, kind, as_of).await
    }

    async fn record_history(&self, kind: RecordKind, id: &str) -> Result<Vec<Record>, StoreError> {
        let client = self.client().await?;
        compliance::record_history(&client, kind, id).await
    }

    async fn record_changes(
        &self,
        after_rev: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKind, Record)>, StoreError> {
        let client = self.client().await?;
        compliance::record_changes(&client, after_rev, limit).await
    }

    async fn pair_facts(&self, as_of: Option<Timestamp>) -> Result<FactsSnapshot, StoreError> {
        let mut client = self.client().await?;
        compliance::pair_facts(&mut client, as_of, 0, None).await
    }

    async fn pair_facts_at_size(&self, size: u64) -> Result<FactsSnapshot, StoreError> {
        let mut client = self.client().await?;
        compliance::pair_facts(&mut client, None, 0, Some(size)).await
    }

    async fn pair_facts_since(&self, changed_since: u64) -> Result<FactsSnapshot, StoreError> {
        let mut client = self.client().await?;
        compliance::pair_facts(&mut client, None, changed_since, None).await
    }

    async fn details(
        &self,
        seqs: &[u64],
    ) -> Result<std::collections::HashMap<u64, String>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT e.seq, e.detail FROM unnest($1::int8[]) AS k(seq) \
                 JOIN events e ON e.seq = k.seq WHERE e.detail IS NOT NULL",
            )
            .await
            .map_err(|e| db_error(&e))?;
        let mut out = std::collections::HashMap::new();
        for chunk in seqs.chunks(10_000) {
            let keys: Vec<i64> = chunk
                .iter()
                .filter_map(|s| i64::try_from(*s).ok())
                .collect();
            for r in client
                .query(&stmt, &[&keys])
                .await
                .map_err(|e| db_error(&e))?
            {
                out.insert(r.get::<_, i64>(0) as u64, r.get(1));
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn cursors(&self) -> Result<Vec<crate::stream::Cursor>, StoreError> {
        let c = self.client().await?;
        stream::cursors(&c).await
    }

    async fn save_cursor(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let c = self.client().await?;
        stream::save_cursor(&c, name, position).await
    }

    async fn add_dead_letter(
        &self,
        letter: crate::stream::NewDeadLetter,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        stream::add_dead_letter(&c, &letter).await
    }

    async fn dead_letters(
        &self,
        sink: Option<&str>,
    ) -> Result<Vec<crate::stream::DeadLetter>, StoreError> {
        let c = self.client().await?;
        stream::dead_letters(&c, sink).await
    }

    async fn remove_dead_letter(&self, id: u64) -> Result<bool, StoreError> {
        let c = self.client().await?;
        stream::remove_dead_letter(&c, id).await
    }

    async fn raise_alert(
        &self,
        key: &str,
        rule: &str,
        body: &str,
    ) -> Result<Option<crate::stream::Alert>, StoreError> {
        let c = self.client().await?;
        stream::raise_alert(&c, key, rule, body).await
    }

    async fn alerts(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::stream::Alert>, StoreError> {
        let c = self.client().await?;
        stream::alerts(&c, after, limit).await
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
