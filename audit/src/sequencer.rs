//! The sequencer: the one thread that appends to the log.
//!
//! Connection tasks only put events on a bounded queue. This thread takes whatever has
//! accumulated (up to `max_batch` events; while one batch is being fsynced the next one builds
//! up, which is the group commit), assigns sequence numbers, hashes the entries into the Merkle
//! tree, writes the batch, signs a checkpoint when one is due, and fsyncs once. Only after the
//! fsync are `sync` callers told their event is durable.
//!
//! It runs on a plain thread, not a tokio task, because everything it does blocks (sled, fsync,
//! signing) and it must keep running while the runtime is busy.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::checkpoint::Checkpoint;
use crate::event::{Category, Event, Outcome};
use crate::key_file;
use crate::merkle::{leaf_hash, Frontier};
use crate::note::{Signer, VerifierKey};
use crate::sled_store::SledStore;
use crate::store::{is_stored_level, AppendBatch, LogStore, StoreError};

/// The action of the event recorded when the signing key is rotated.
pub const KEY_ROTATE_ACTION: &str = "audit.key.rotate";
/// The `details` field of that event holding the new verifier key.
pub const NEW_KEY_DETAIL: &str = "new_verifier_key";

/// Why an event was not made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WriteFailed(pub String);

/// The answer to a `sync` event: its sequence number once durable.
pub type Ack = oneshot::Sender<Result<u64, WriteFailed>>;

/// A queued event.
pub(crate) struct Queued {
    pub event: Event,
    pub ack: Option<Ack>,
}

/// A request to the sequencer other than an event.
pub(crate) enum Control {
    /// Sign a checkpoint now (if the log grew) and answer with the latest signed note.
    Checkpoint(oneshot::Sender<Result<String, WriteFailed>>),
    /// Rotate the signing key; answer with the new verifier key.
    Rotate(oneshot::Sender<Result<VerifierKey, WriteFailed>>),
    /// Drain the queue, sign a final checkpoint, flush and stop.
    Shutdown(oneshot::Sender<()>),
}

/// Counters shared with the handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events dropped at the queue (full or closed) or lost to failed writes.
    pub dropped: AtomicU64,
    /// Events whose write or fsync failed.
    pub write_errors: AtomicU64,
    /// Entries appended.
    pub appended: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// `(first, last)` timestamps of drops not yet reported in a gap entry.
    pub drop_window: Mutex<Option<(String, String)>>,
    /// The store's size on disk at the last check.
    pub disk_bytes: AtomicU64,
    /// Set while the store is at or over its disk budget: `async` events are refused.
    pub over_disk_budget: AtomicBool,
}

impl Counters {
    /// Records one lost event at `timestamp`.
    pub fn note_drop(&self, timestamp: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        let mut w = self
            .drop_window
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &mut *w {
            Some((_, last)) => timestamp.clone_into(last),
            None => *w = Some((timestamp.to_owned(), timestamp.to_owned())),
        }
    }
}

/// The sequencer's state.
pub(crate) struct Sequencer {
    pub store: Arc<SledStore>,
    pub counters: Arc<Counters>,
    pub frontier: Frontier,
    pub signer: Signer,
    pub key_path: PathBuf,
    pub origin: String,
    pub anchors: Vec<Arc<dyn crate::anchor::Anchor>>,
    /// Checkpoints signed but not yet published to the anchors (published once fsynced).
    pub unpublished: Vec<String>,
    pub max_batch: usize,
    /// The store's disk budget in bytes.
    pub max_disk_bytes: u64,
    pub checkpoint_interval: Duration,
    pub checkpoint_every: u64,
    pub last_checkpoint_size: u64,
    pub last_checkpoint_note: Option<String>,
    /// Drop count already reported by a gap entry.
    pub reported_dropped: u64,
    /// False after a failed write until the in-memory tree is rebuilt from the store.
    pub healthy: bool,
}

impl Sequencer {
    /// Appends queued events until the log is shut down. `durable` (events of `sync`
    /// categories) is emptied before each batch takes data-path events from `rx`, so a
    /// durable event waits for at most one batch, never for a queue of data-path events.
    pub(crate) fn run(
        mut self,
        rx: Receiver<Queued>,
        durable: Receiver<Queued>,
        control: Receiver<Control>,
    ) {
        let mut batch: Vec<Queued> = Vec::with_capacity(self.max_batch);
        let mut next_tick = Instant::now() + self.checkpoint_interval;
        loop {
            self.take_available(&durable, &mut batch);
            if batch.is_empty() {
                // Short waits: a durable event arriving meanwhile is seen within 2 ms.
                let wait = next_tick
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(2));
                match rx.recv_timeout(wait) {
                    Ok(first) => batch.push(first),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.drain(&durable, &rx, &mut batch);
                        self.finish();
                        return;
                    }
                }
                self.take_available(&durable, &mut batch);
            }
            self.take_available(&rx, &mut batch);
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            while let Ok(c) = control.try_recv() {
                match c {
                    // Each request covers everything queued before it was made.
                    Control::Checkpoint(reply) => {
                        self.drain(&durable, &rx, &mut batch);
                        let r = self.checkpoint_and_flush(false);
                        let _ = reply.send(r);
                    }
                    Control::Rotate(reply) => {
                        self.drain(&durable, &rx, &mut batch);
                        let _ = reply.send(self.rotate());
                    }
                    Control::Shutdown(done) => {
                        self.drain(&durable, &rx, &mut batch);
                        self.finish();
                        let _ = done.send(());
                        return;
                    }
                }
            }
            if Instant::now() >= next_tick {
                self.check_disk_budget();
                if self.frontier.size() != self.last_checkpoint_size {
                    if let Err(err) = self.checkpoint_and_flush(false) {
                        tracing::error!(error = %err, "cannot write audit checkpoint");
                    }
                }
                next_tick = Instant::now() + self.checkpoint_interval;
            }
        }
    }

    /// Measures the store and flips the disk-budget state, writing one `audit.disk_budget`
    /// event whenever it changes.
    fn check_disk_budget(&mut self) {
        let Ok(size) = self.store.size_on_disk() else {
            return;
        };
        self.counters.disk_bytes.store(size, Ordering::Relaxed);
        let over = size >= self.max_disk_bytes;
        if self.counters.over_disk_budget.swap(over, Ordering::AcqRel) == over {
            return;
        }
        let event = if over {
            tracing::error!(size, budget = self.max_disk_bytes, "audit log reached its disk budget: data-path audit events are dropped until space is freed");
            Event::new(Category::AuditSystem, "audit.disk_budget", Outcome::Error).reason(format!(
                "the audit store holds {size} bytes, its budget is {}: events of async categories (connection, authz) are dropped and counted; sync categories are still written",
                self.max_disk_bytes
            ))
        } else {
            Event::new(Category::AuditSystem, "audit.disk_budget", Outcome::Success).reason(
                format!("the audit store is back under its budget ({size} bytes)"),
            )
        };
        let event = event
            .detail("disk_bytes", size)
            .detail("max_disk_bytes", self.max_disk_bytes);
        self.commit(&mut vec![Queued { event, ack: None }]);
    }

    /// Moves what `rx` holds into `batch`, up to the batch size.
    fn take_available(&self, rx: &Receiver<Queued>, batch: &mut Vec<Queued>) {
        while batch.len() < self.max_batch {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
    }

    /// Commits everything currently queued, durable events first.
    fn drain(
        &mut self,
        durable: &Receiver<Queued>,
        rx: &Receiver<Queued>,
        batch: &mut Vec<Queued>,
    ) {
        loop {
            self.take_available(durable, batch);
            self.take_available(rx, batch);
            if batch.is_empty() {
                return;
            }
            self.commit(batch);
        }
    }

    /// Signs a checkpoint at open if the log has none or grew since its last one.
    pub(crate) fn initial_checkpoint(&mut self) {
        if let Err(err) = self.checkpoint_and_flush(false) {
            tracing::error!(error = %err, "cannot write the opening audit checkpoint");
        }
    }

    fn finish(&mut self) {
        // A gap entry for drops since the last batch, then the final checkpoint.
        let mut empty = Vec::new();
        if self.counters.dropped.load(Ordering::Relaxed) > self.reported_dropped {
            self.commit(&mut empty);
        }
        if let Err(err) = self.checkpoint_and_flush(false) {
            tracing::error!(error = %err, "cannot write the final audit checkpoint");
        }
    }

    /// Appends `batch` (emptying it) with a gap entry first if events were lost, signs a
    /// checkpoint if one is due, fsyncs once, then answers the `sync` callers.
    pub(crate) fn commit(&mut self, batch: &mut Vec<Queued>) {
        if !self.healthy {
            if let Err(err) = self.reload() {
                self.fail_all(batch, &format!("audit log unavailable: {err}"));
                return;
            }
        }
        let dropped_total = self.counters.dropped.load(Ordering::Relaxed);
        let lost = dropped_total - self.reported_dropped;
        let mut events: Vec<(Event, Option<Ack>)> = Vec::with_capacity(batch.len() + 1);
        if lost > 0 {
            let window = self
                .counters
                .drop_window
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let mut gap = Event::new(Category::AuditSystem, "audit.gap", Outcome::Error)
                .reason(format!(
                    "{lost} audit event(s) were lost (queue full, log unavailable or write failed)"
                ))
                .detail("lost", lost)
                .detail("lost_total", dropped_total);
            if let Some((first, last)) = window {
                gap = gap
                    .detail("first_lost_at", first)
                    .detail("last_lost_at", last);
            }
            events.push((gap, None));
        }
        events.extend(batch.drain(..).map(|q| (q.event, q.ack)));
        if events.is_empty() {
            return;
        }

        let mut out = AppendBatch::default();
        let mut acks: Vec<(Ack, u64)> = Vec::new();
        let mut appended = 0u64;
        for (mut event, ack) in events {
            let seq = self.frontier.size();
            event.seq = Some(seq);
            let bytes = match serde_json::to_vec(&event) {
                Ok(b) => b,
                Err(err) => {
                    if let Some(ack) = ack {
                        let _ = ack.send(Err(WriteFailed(format!("cannot encode event: {err}"))));
                    }
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let hashes = &mut out.hashes;
            self.frontier.push(leaf_hash(&bytes), |n| {
                if is_stored_level(n.level) {
                    hashes.push((n.level, n.index, n.hash));
                }
            });
            out.by_time.push((event.timestamp.clone(), seq));
            if let Some(p) = &event.principal {
                out.by_principal.push((p.clone(), seq));
            }
            out.entries.push((seq, bytes));
            if let Some(ack) = ack {
                acks.push((ack, seq));
            }
            appended += 1;
        }
        let result = self.store.append(&out).and_then(|()| {
            if self
                .frontier
                .size()
                .saturating_sub(self.last_checkpoint_size)
                >= self.checkpoint_every
            {
                self.checkpoint()?;
            }
            self.store.flush()
        });
        match result {
            Ok(()) => {
                self.publish_anchors();
                self.reported_dropped = dropped_total;
                self.counters
                    .appended
                    .fetch_add(appended, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                for (ack, seq) in acks {
                    let _ = ack.send(Ok(seq));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, events = appended, "cannot write audit events");
                self.counters
                    .write_errors
                    .fetch_add(appended, Ordering::Relaxed);
                let now = crate::event::now_timestamp();
                for _ in 0..appended {
                    self.counters.note_drop(&now);
                }
                self.unpublished.clear();
                let msg = format!("audit write failed: {err}");
                for (ack, _) in acks {
                    let _ = ack.send(Err(WriteFailed(msg.clone())));
                }
                self.healthy = false;
            }
        }
    }

    fn fail_all(&self, batch: &mut Vec<Queued>, msg: &str) {
        let now = crate::event::now_timestamp();
        for q in batch.drain(..) {
            self.counters.note_drop(&now);
            if let Some(ack) = q.ack {
                let _ = ack.send(Err(WriteFailed(msg.to_owned())));
            }
        }
    }

    /// Rebuilds the in-memory tree from what the store holds (after a failed write).
    fn reload(&mut self) -> Result<(), StoreError> {
        self.frontier = crate::log::repair(&*self.store)?;
        self.healthy = true;
        Ok(())
    }

    /// Publishes the checkpoints made durable by the last flush to every anchor. Only durable
    /// checkpoints are published: an anchored checkpoint the store lost in a crash would make
    /// the log refuse to open.
    fn publish_anchors(&mut self) {
        for note in self.unpublished.drain(..) {
            for anchor in &self.anchors {
                if let Err(err) = anchor.publish(&note) {
                    tracing::error!(error = %err, "cannot publish an audit checkpoint");
                }
            }
        }
    }

    /// Signs and stores a checkpoint of the current tree (not flushed).
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: self.frontier.size(),
            root: self.frontier.root(),
        };
        let note = cp.sign(&self.signer);
        self.store.put_checkpoint(cp.size, &note)?;
        if !self.anchors.is_empty() {
            self.unpublished.push(note.clone());
        }
        self.last_checkpoint_size = cp.size;
        self.last_checkpoint_note = Some(note);
        Ok(())
    }

    fn checkpoint_and_flush(&mut self, force: bool) -> Result<String, WriteFailed> {
        if !self.healthy {
            self.reload().map_err(|e| WriteFailed(e.to_string()))?;
        }
        if force
            || self.last_checkpoint_note.is_none()
            || self.frontier.size() != self.last_checkpoint_size
        {
            if let Err(e) = self.checkpoint().and_then(|()| self.store.flush()) {
                self.unpublished.clear();
                return Err(WriteFailed(e.to_string()));
            }
            self.publish_anchors();
        }
        self.last_checkpoint_note
            .clone()
            .ok_or_else(|| WriteFailed("no checkpoint".into()))
    }

    /// Records the rotation in the log, seals it with a checkpoint signed by the old key, then
    /// switches to the new key.
    fn rotate(&mut self) -> Result<VerifierKey, WriteFailed> {
        let new = Signer::generate(&self.origin).map_err(|e| WriteFailed(e.to_string()))?;
        let (tx, _rx) = oneshot::channel();
        let event = Event::new(Category::Key, KEY_ROTATE_ACTION, Outcome::Success)
            .reason("audit signing key rotated")
            .detail("old_verifier_key", self.signer.verifier().to_string())
            .detail(NEW_KEY_DETAIL, new.verifier().to_string());
        let mut batch = vec![Queued {
            event,
            ack: Some(tx),
        }];
        let before = self.frontier.size();
        self.commit(&mut batch);
        if self.frontier.size() == before || !self.healthy {
            return Err(WriteFailed("cannot record the key rotation".into()));
        }
        self.checkpoint_and_flush(true)?;
        self.store
            .add_verifier_key(&new.verifier().to_string())
            .and_then(|()| self.store.flush())
            .map_err(|e| WriteFailed(e.to_string()))?;
        key_file::write_private(&self.key_path, &new).map_err(|e| WriteFailed(e.to_string()))?;
        let verifier = new.verifier().clone();
        self.signer = new;
        Ok(verifier)
    }
}
