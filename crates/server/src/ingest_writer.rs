//! Group commit for ingest: concurrent ingest requests are written in one transaction.
//!
//! Each request hands its validated batch to a writer task and waits for its own result. A writer
//! takes every batch that is waiting (up to [`MAX_GROUP`]) and stores them with
//! `Store::ingest_groups`: one transaction, each batch in its own savepoint, so every request keeps its
//! all-or-nothing answer while many share one commit. A request is answered only after that commit.
//! There are as many writers as the store says are worth it (`Store::ingest_writers`): while one
//! commits, the next gathers the batches that arrived meanwhile.

use std::sync::Arc;

use sipsim_core::clock::now_ms;
use sipsim_core::queue::{IngestOutcome, NewMessage};
use sipsim_core::{Store, StoreError};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::error::error_chain;

/// Most requests committed together.
const MAX_GROUP: usize = 64;

struct Job {
    messages: Vec<NewMessage>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
}

/// The handle requests use; the writer task stops when the last handle is dropped.
#[derive(Clone)]
pub struct IngestWriter {
    jobs: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// Starts the writers over `store`; each wakes `wake` after a commit that enqueued deliveries.
    pub fn spawn(store: Arc<dyn Store>, wake: Arc<Notify>) -> Self {
        let (jobs, queue) = mpsc::channel(MAX_GROUP * 4);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..store.ingest_writers().max(1) {
            tokio::spawn(write_groups(store.clone(), wake.clone(), queue.clone()));
        }
        IngestWriter { jobs }
    }

    /// Stores one batch (atomically) and returns its outcomes once committed.
    pub async fn ingest(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Backend("the ingest writer has stopped".into());
        self.jobs.send(Job { messages, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn write_groups(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    // One writer at a time waits for batches; it lets go of the queue as soon as it has some.
    while queue.lock().await.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let groups: Vec<&[NewMessage]> = jobs.iter().map(|j| j.messages.as_slice()).collect();
        let results = store.ingest_groups(&groups, now_ms()).await;
        let mut enqueued = false;
        match results {
            Ok(results) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    enqueued |= result.as_ref().is_ok_and(|outcomes| {
                        outcomes.iter().any(|o| matches!(o, IngestOutcome::Enqueued { .. }))
                    });
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                let cause = error_chain(&e);
                tracing::error!(error = %cause, requests = jobs.len(), "ingest commit failed");
                for job in jobs.drain(..) {
                    // Each request learns why: "storage is full" is theirs to retry later.
                    let theirs = match &e {
                        StoreError::StorageFull(why) => StoreError::StorageFull(why.clone()),
                        _ => StoreError::Backend(cause.clone().into()),
                    };
                    let _ = job.reply.send(Err(theirs));
                }
            }
        }
        if enqueued {
            wake.notify_one();
        }
    }
}
