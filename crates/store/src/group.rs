//! The queue in front of a backend's single writer, shared by every backend.
//!
//! Appends wait in an unbounded queue; the writer takes whatever has
//! accumulated (up to a cap) as one group and commits it in one
//! transaction. While one group commits, the next one fills up, which is
//! what makes group commit adapt to load with no timer.

use crate::{Appended, StoreError};
use patchaudit_domain::NewEvent;
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
