//! The stream's tables in PostgreSQL (see [`crate::stream`]).

use super::{db_error, micros, to_datetime};
use crate::stream::{Alert, Cursor, DeadLetter, NewDeadLetter};
use crate::StoreError;
use chrono::{DateTime, Utc};
use patchaudit_domain::Timestamp;
use tokio_postgres::Client;

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_micros(micros(t))
}

fn pos(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) async fn cursors(c: &Client) -> Result<Vec<Cursor>, StoreError> {
    let rows = c
        .query(
            "SELECT name, position, updated_at FROM stream_cursors ORDER BY name",
            &[],
        )
        .await
        .map_err(|e| db_error(&e))?;
    Ok(rows
        .iter()
        .map(|r| Cursor {
            name: r.get(0),
            position: r.get::<_, i64>(1) as u64,
            updated_at: ts(r.get(2)),
        })
        .collect())
}

pub(super) async fn save_cursor(c: &Client, name: &str, position: u64) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO stream_cursors (name, position, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
         WHERE excluded.position > stream_cursors.position",
        &[&name, &pos(position), &to_datetime(Timestamp::now())],
    )
    .await
    .map_err(|e| db_error(&e))?;
    Ok(())
}

pub(super) async fn add_dead_letter(c: &Client, l: &NewDeadLetter) -> Result<u64, StoreError> {
    let row = c
        .query_one(
            "INSERT INTO dead_letters (sink, message_id, payload, attempts, error, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &l.sink,
                &l.message_id,
                &l.payload,
                &(l.attempts.min(i32::MAX as u32) as i32),
                &l.error,
                &to_datetime(Timestamp::now()),
            ],
        )
        .await
        .map_err(|e| db_error(&e))?;
    Ok(row.get::<_, i64>(0) as u64)
}

pub(super) async fn dead_letters(
    c: &Client,
    sink: Option<&str>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = c
        .query(
            "SELECT id, sink, message_id, payload, attempts, error, failed_at FROM dead_letters \
             WHERE $1::text IS NULL OR sink = $1 ORDER BY id",
            &[&sink],
        )
        .await
        .map_err(|e| db_error(&e))?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            id: r.get::<_, i64>(0) as u64,
            sink: r.get(1),
            message_id: r.get(2),
            payload: r.get(3),
            attempts: r.get::<_, i32>(4).max(0) as u32,
            error: r.get(5),
            failed_at: ts(r.get(6)),
        })
        .collect())
}

pub(super) async fn remove_dead_letter(c: &Client, id: u64) -> Result<bool, StoreError> {
    let n = c
        .execute("DELETE FROM dead_letters WHERE id = $1", &[&pos(id)])
        .await
        .map_err(|e| db_error(&e))?;
    Ok(n > 0)
}

pub(super) async fn raise_alert(
    c: &Client,
    key: &str,
    rule: &str,
    body: &str,
) -> Result<Option<Alert>, StoreError> {
    let now = Timestamp::now();
    let row = c
        .query_opt(
            "INSERT INTO alerts (key, rule, raised_at, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO NOTHING RETURNING id",
            &[&key, &rule, &to_datetime(now), &body],
        )
        .await
        .map_err(|e| db_error(&e))?;
    Ok(row.map(|r| Alert {
        id: r.get::<_, i64>(0) as u64,
        key: key.to_owned(),
        rule: rule.to_owned(),
        raised_at: now,
        body: body.to_owned(),
    }))
}

pub(super) async fn alerts(c: &Client, after: u64, limit: usize) -> Result<Vec<Alert>, StoreError> {
    let rows = c
        .query(
            "SELECT id, key, rule, raised_at, body FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",
            &[&pos(after), &(i64::try_from(limit).unwrap_or(i64::MAX))],
        )
        .await
        .map_err(|e| db_error(&e))?;
    Ok(rows
        .iter()
        .map(|r| Alert {
            id: r.get::<_, i64>(0) as u64,
            key: r.get(1),
            rule: r.get(2),
            raised_at: ts(r.get(3)),
            body: r.get(4),
        })
        .collect())
}
