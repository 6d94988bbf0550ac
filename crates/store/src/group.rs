//! The queue in front of a backend's single writer, shared by every backend.
//!
//! Appends wait in an unbounded queue; the writer takes whatever has
//! accumulated (up to a cap) as one group and commits it in one
//! transaction. While one group commits, the next one fills up, which is
//! what makes group commit adapt to load with no timer.

use crate::derived::Derived;
use crate::{Appended, StoreError};
use patchaudit_domain::{NewEvent, Timestamp};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// One append waiting for the writer.
pub(crate) struct Request {
    /// The events, already validated.
    pub batch: Vec<NewEvent>,
    /// The principal that submitted them.
    pub recorded_by: String,
    /// Where the outcome goes once the group is committed (or failed).
    pub reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
}

/// The receiving end, owned by the writer.
pub(crate) type Queue = mpsc::UnboundedReceiver<Request>;

/// The sending end, shared by every caller of `append`.
pub(crate) struct Handle {
    tx: mpsc::UnboundedSender<Request>,
    name: &'static str,
}

/// A new queue; `name` says which writer it feeds, for error messages.
pub(crate) fn queue(name: &'static str) -> (Handle, Queue) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Handle { tx, name }, rx)
}

impl Handle {
    /// Queues an append and waits for its committed outcome.
    pub async fn append(
        &self,
        batch: Vec<NewEvent>,
        recorded_by: String,
    ) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                batch,
                recorded_by,
                reply,
            })
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Fails when the writer has stopped.
    pub fn check_alive(&self) -> Result<(), StoreError> {
        if self.tx.is_closed() {
            Err(self.gone())
        } else {
            Ok(())
        }
    }

    fn gone(&self) -> StoreError {
        StoreError::Internal(format!("the {} writer has stopped", self.name))
    }
}

/// Adds to `first` every request already waiting, until the group holds
/// `max_events` events.
pub(crate) fn fill(first: Request, queue: &mut Queue, max_events: usize) -> Vec<Request> {
    let mut n = first.batch.len();
    let mut group = vec![first];
    while n < max_events {
        match queue.try_recv() {
            Ok(r) => {
                n += r.batch.len();
                group.push(r);
            }
            Err(_) => break,
        }
    }
    group
}

/// Sends every request the same failure (nothing of the group committed).
pub(crate) fn fail_all(group: Vec<Request>, err: &StoreError) {
    for req in group {
        let _ = req.reply.send(Err(match err {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            other => StoreError::Internal(other.to_string()),
        }));
    }
}

/// Sends each request its own outcome.
pub(crate) fn reply_all(group: Vec<Request>, results: Vec<Result<Vec<Appended>, StoreError>>) {
    for (req, res) in group.into_iter().zip(results) {
        let _ = req.reply.send(res);
    }
}

/// What the ledger already holds under an `event_id`.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    /// The seq recorded under it.
    pub seq: i64,
    /// The SHA-256 of its canonical content.
    pub hash: Vec<u8>,
    /// When it was recorded.
    pub recorded_at: Timestamp,
}

/// One event the plan writes.
pub(crate) struct PlannedRow<'a> {
    pub seq: i64,
    pub event: &'a NewEvent,
    pub digest: [u8; 32],
    pub recorded_by: &'a str,
}

/// What a group commit will write, decided before anything is written.
pub(crate) struct Plan<'a> {
    /// The new events, in seq order.
    pub rows: Vec<PlannedRow<'a>>,
    /// Their effect on the derived summaries, over the whole group.
    pub derived: Derived,
    /// Each request's outcome, in request order.
    pub results: Vec<Result<Vec<Appended>, StoreError>>,
    /// The head after the group.
    pub next_seq: i64,
}

/// Decides, request by request, which events are new, which are duplicates
/// of recorded (or earlier in the group) events, and which requests conflict.
/// A request with a conflict is left out whole, so the group needs no
/// savepoints: all-or-nothing per request holds by construction.
///
/// `known` looks an `event_id` up in the ledger as it stood before the group.
pub(crate) fn plan<'a>(
    group: &'a [Request],
    start: i64,
    now: Timestamp,
    mut known: impl FnMut(&str) -> Result<Option<Known>, StoreError>,
) -> Result<Plan<'a>, StoreError> {
    let mut next = start;
    let mut in_group: HashMap<&'a str, (i64, [u8; 32])> = HashMap::new();
    let mut plan = Plan {
        rows: Vec::new(),
        derived: Derived::default(),
        results: Vec::with_capacity(group.len()),
        next_seq: start,
    };
    for req in group {
        let mut out = Vec::with_capacity(req.batch.len());
        let mut mine: Vec<(i64, &'a NewEvent, [u8; 32])> = Vec::new();
        let mut mine_ids: HashMap<&'a str, (i64, [u8; 32])> = HashMap::new();
        let mut conflict = None;
        for (index, ev) in req.batch.iter().enumerate() {
            let digest = ev.content_digest();
            if let Some(id) = &ev.event_id {
                let id = id.as_str();
                let prior = match mine_ids.get(id).or_else(|| in_group.get(id)) {
                    Some(&(seq, d)) => Some((seq, d == digest, now)),
                    None => known(id)?
                        .map(|k| (k.seq, k.hash.as_slice() == digest.as_slice(), k.recorded_at)),
                };
                if let Some((seq, same, recorded_at)) = prior {
                    if same {
                        out.push(Appended {
                            seq: seq as u64,
                            recorded_at,
                            duplicate: true,
                        });
                        continue;
                    }
                    conflict = Some(StoreError::Conflict {
                        index,
                        event_id: id.to_owned(),
                        existing_seq: seq as u64,
                    });
                    break;
                }
                mine_ids.insert(id, (next + mine.len() as i64, digest));
            }
            let seq = next + mine.len() as i64;
            mine.push((seq, ev, digest));
            out.push(Appended {
                seq: seq as u64,
                recorded_at: now,
                duplicate: false,
            });
        }
        if let Some(e) = conflict {
            plan.results.push(Err(e));
            continue;
        }
        next += mine.len() as i64;
        in_group.extend(mine_ids);
        for (seq, event, digest) in mine {
            plan.derived.add(seq, event);
            plan.rows.push(PlannedRow {
                seq,
                event,
                digest,
                recorded_by: &req.recorded_by,
            });
        }
        plan.results.push(Ok(out));
    }
    plan.next_seq = next;
    Ok(plan)
}
