//! Group commit. The queue's hot writes (accepting a message, claiming, noting a final dot,
//! settling an attempt) go to one writer task with its own connection. It runs whatever has
//! arrived in one transaction and commits once, so concurrent callers share one commit (one
//! fsync with `synchronous = FULL`), and each caller is answered only after the commit that holds
//! its write: an acknowledgement still means "on disk".
//!
//! No timer gathers a batch: while one commit is in progress the next writes queue up, and they
//! form the next batch. A lone write is committed at once; under load batches grow by
//! themselves.
//!
//! A write that fails (a unique violation) must not take its batch down with it. Savepoints
//! around each write would say so, at two more statements per write, and on SQLite every
//! statement is a hand-off to the connection's thread and back. Failures are rare, so the batch
//! runs bare; when one write fails the whole transaction is rolled back and each write runs
//! again in a transaction of its own, so only the failing one fails. Writes are therefore `Fn`:
//! a write may run twice, the first time undone.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Writes waiting beyond this make their callers wait to enqueue: the writer sets the pace.
const QUEUE: usize = 4096;
/// The most writes in one transaction: a commit's latency stays bounded under a flood.
const MAX_BATCH: usize = 512;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Output = Box<dyn Any + Send>;
type Run = Box<
    dyn for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, Result<Output, StoreError>>
        + Send
        + Sync,
>;

enum Request {
    Write {
        run: Run,
        answer: oneshot::Sender<Result<Output, StoreError>>,
    },
    /// Finish what is queued, then stop.
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Writer {
    pool: AnyPool,
    requests: mpsc::Sender<Request>,
    counts: Arc<Counts>,
}

/// Writes and the transactions that held them, since start: how much the batching saves.
#[derive(Default)]
pub struct Counts {
    pub writes: AtomicU64,
    pub commits: AtomicU64,
}

impl Writer {
    pub fn start(pool: AnyPool) -> Self {
        let (requests, incoming) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(run(pool.clone(), incoming, Arc::clone(&counts)));
        Self {
            pool,
            requests,
            counts,
        }
    }

    /// The writer's connection, for writes that queue for it between batches.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// (writes, commits) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.writes.load(Ordering::Relaxed),
            self.counts.commits.load(Ordering::Relaxed),
        )
    }

    /// Runs `write` in the next batch and returns its result once that batch is committed.
    /// `write` may run twice, the first run rolled back (see above).
    pub async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let run: Run = Box::new(move |conn| {
            let done = write(conn);
            Box::pin(async move { done.await.map(|t| Box::new(t) as Output) })
        });
        self.requests
            .send(Request::Write { run, answer })
            .await
            .map_err(|_| StoreError::Closed)?;
        let output = answered.await.map_err(|_| StoreError::Closed)??;
        output
            .downcast::<T>()
            .map(|t| *t)
            .map_err(|_| StoreError::Closed)
    }

    /// Commits what is queued and stops; later writes fail with `StoreError::Closed`.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.requests.send(Request::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

async fn run(pool: AnyPool, mut incoming: mpsc::Receiver<Request>, counts: Arc<Counts>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = incoming.recv().await else {
            break;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            match request {
                Request::Write { run, answer } => writes.push((run, answer)),
                Request::Close(done) => closing = Some(done),
            }
        }
        if !writes.is_empty() {
            counts
                .writes
                .fetch_add(writes.len() as u64, Ordering::Relaxed);
            counts.commits.fetch_add(1, Ordering::Relaxed);
            // In a task of its own: a write that panicked fails its batch (its callers hear that
            // nothing was committed), not the writer and every write after it.
            let pool = pool.clone();
            if tokio::spawn(async move { commit(&pool, writes).await })
                .await
                .is_err()
            {
                tracing::error!("a database write panicked; its batch was not committed");
            }
        }
    }
    incoming.close();
    pool.close().await;
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

type Pending = (Run, oneshot::Sender<Result<Output, StoreError>>);

/// One transaction for the batch; every caller hears the outcome of the commit. If a write
/// fails, each runs again alone.
async fn commit(pool: &AnyPool, writes: Vec<Pending>) {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(writes, e),
    };
    let mut outputs = Vec::with_capacity(writes.len());
    for (run, _) in &writes {
        match run(&mut tx).await {
            Ok(output) => outputs.push(output),
            Err(_) => break,
        }
    }
    if outputs.len() < writes.len() {
        if let Err(e) = tx.rollback().await {
            return fail_all(writes, e);
        }
        for (run, answer) in writes {
            let _ = answer.send(alone(pool, &run).await);
        }
        return;
    }
    match tx.commit().await {
        Ok(()) => {
            for ((_, answer), output) in writes.into_iter().zip(outputs) {
                let _ = answer.send(Ok(output));
            }
        }
        Err(e) => fail_all(writes, e),
    }
}

/// One write in a transaction of its own.
async fn alone(pool: &AnyPool, run: &Run) -> Result<Output, StoreError> {
    let mut tx = pool.begin().await?;
    match run(&mut tx).await {
        Ok(output) => {
            tx.commit().await?;
            Ok(output)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

fn fail_all(writes: Vec<Pending>, e: sqlx::Error) {
    let e = Arc::new(e);
    for (_, answer) in writes {
        let _ = answer.send(Err(StoreError::Batch(Arc::clone(&e))));
    }
}
