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
//! Each write runs under its own SAVEPOINT, so one that fails (a unique violation, a lost lease)
//! is rolled back alone and the others in its batch still commit. On SQLite a single writer also
//! keeps writers from meeting SQLite's busy handler, which sleeps whole milliseconds.

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
    dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<Output, StoreError>> + Send,
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
    pub async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let run: Run = Box::new(move |conn| {
            Box::pin(async move { write(conn).await.map(|t| Box::new(t) as Output) })
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
            commit(&pool, writes).await;
        }
    }
    incoming.close();
    pool.close().await;
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// One transaction for the batch; every caller hears the outcome of the commit.
async fn commit(pool: &AnyPool, writes: Vec<(Run, oneshot::Sender<Result<Output, StoreError>>)>) {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let e = Arc::new(e);
            for (_, answer) in writes {
                let _ = answer.send(Err(StoreError::Batch(Arc::clone(&e))));
            }
            return;
        }
    };
    let mut results = Vec::with_capacity(writes.len());
    for (run, answer) in writes {
        let result = isolated(&mut tx, run).await;
        results.push((result, answer));
    }
    match tx.commit().await {
        Ok(()) => {
            for (result, answer) in results {
                let _ = answer.send(result);
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for (_, answer) in results {
                let _ = answer.send(Err(StoreError::Batch(Arc::clone(&e))));
            }
        }
    }
}

/// One write under its own savepoint: on failure its changes go, the batch's stay.
async fn isolated(conn: &mut AnyConnection, run: Run) -> Result<Output, StoreError> {
    sqlx::query("SAVEPOINT write").execute(&mut *conn).await?;
    let result = run(conn).await;
    let end = if result.is_ok() {
        "RELEASE SAVEPOINT write"
    } else {
        "ROLLBACK TO SAVEPOINT write"
    };
    sqlx::query(end).execute(&mut *conn).await?;
    if result.is_err() {
        // ROLLBACK TO keeps the savepoint open; release it so savepoints do not pile up.
        sqlx::query("RELEASE SAVEPOINT write")
            .execute(&mut *conn)
            .await?;
    }
    result
}
