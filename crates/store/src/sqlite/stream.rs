//! The stream's tables in SQLite (see [`crate::stream`]).

use super::internal;
use crate::stream::{Alert, Cursor, DeadLetter, NewDeadLetter};
use crate::StoreError;
use patchaudit_domain::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn cursors(conn: &Connection) -> Result<Vec<Cursor>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT name, position, updated_at FROM stream_cursors ORDER BY name")
        .map_err(internal)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Cursor {
                name: r.get(0)?,
                position: r.get::<_, i64>(1)? as u64,
                updated_at: Timestamp::from_micros(r.get(2)?),
            })
        })
        .map_err(internal)?;
    rows.map(|r| r.map_err(internal)).collect()
}

pub(super) fn save_cursor(conn: &Connection, name: &str, position: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO stream_cursors (name, position, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
         WHERE excluded.position > stream_cursors.position",
        params![
            name,
            i64::try_from(position).unwrap_or(i64::MAX),
            Timestamp::now().as_micros()
        ],
    )
    .map_err(internal)?;
    Ok(())
}

pub(super) fn add_dead_letter(conn: &Connection, l: &NewDeadLetter) -> Result<u64, StoreError> {
    conn.execute(
        "INSERT INTO dead_letters (sink, message_id, payload, attempts, error, failed_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
        params![
            l.sink,
            l.message_id,
            l.payload,
            l.attempts,
            l.error,
            Timestamp::now().as_micros()
        ],
    )
    .map_err(internal)?;
    Ok(conn.last_insert_rowid() as u64)
}

pub(super) fn dead_letters(
    conn: &Connection,
    sink: Option<&str>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, sink, message_id, payload, attempts, error, failed_at FROM dead_letters \
             WHERE ?1 IS NULL OR sink = ?1 ORDER BY id",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map([sink], |r| {
            Ok(DeadLetter {
                id: r.get::<_, i64>(0)? as u64,
                sink: r.get(1)?,
                message_id: r.get(2)?,
                payload: r.get(3)?,
                attempts: r.get(4)?,
                error: r.get(5)?,
                failed_at: Timestamp::from_micros(r.get(6)?),
            })
        })
        .map_err(internal)?;
    rows.map(|r| r.map_err(internal)).collect()
}

pub(super) fn remove_dead_letter(conn: &Connection, id: u64) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "DELETE FROM dead_letters WHERE id = ?",
            [i64::try_from(id).unwrap_or(i64::MAX)],
        )
        .map_err(internal)?;
    Ok(n > 0)
}

pub(super) fn raise_alert(
    conn: &Connection,
    key: &str,
    rule: &str,
    body: &str,
) -> Result<Option<Alert>, StoreError> {
    let now = Timestamp::now();
    let id: Option<i64> = conn
        .query_row(
            "INSERT INTO alerts (key, rule, raised_at, body) VALUES (?, ?, ?, ?) \
             ON CONFLICT (key) DO NOTHING RETURNING id",
            params![key, rule, now.as_micros(), body],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    Ok(id.map(|id| Alert {
        id: id as u64,
        key: key.to_owned(),
        rule: rule.to_owned(),
        raised_at: now,
        body: body.to_owned(),
    }))
}

pub(super) fn alerts(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<Alert>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, key, rule, raised_at, body FROM alerts WHERE id > ? ORDER BY id LIMIT ?",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map(
            params![
                i64::try_from(after).unwrap_or(i64::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(Alert {
                    id: r.get::<_, i64>(0)? as u64,
                    key: r.get(1)?,
                    rule: r.get(2)?,
                    raised_at: Timestamp::from_micros(r.get(3)?),
                    body: r.get(4)?,
                })
            },
        )
        .map_err(internal)?;
    rows.map(|r| r.map_err(internal)).collect()
}
