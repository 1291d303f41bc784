//! An audit sink that appends one JSON object per line to a file.
//!
//! [`JsonLinesSink`] is the cheap, shareable front half (a bounded queue); [`JsonLinesWriter`]
//! owns the task that empties the queue into the file. The split keeps
//! [`AuditSink::emit`] free of I/O and lets the proxy's shutdown sequence wait for the log to
//! be complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::AuditError;
use crate::event::{Category, Event, Outcome};
use crate::sink::{AuditSink, EmitOutcome};

/// Most events the writer takes from the queue before writing and flushing.
const BATCH: usize = 256;

/// Least time between two "audit queue full" warnings in the tracing log.
const DROP_WARN_INTERVAL_MS: u64 = 1_000;

/// Counters shared between the sink and its writer task.
#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

/// An [`AuditSink`] that appends events to a file as JSON lines.
///
/// Created with [`JsonLinesSink::start`], which also returns the [`JsonLinesWriter`] that must
/// be shut down to flush the file. [`emit`](AuditSink::emit) puts the event on a bounded
/// queue; when the queue is full (the disk is slower than the event rate) or the writer has
/// been shut down, the event is dropped, counted, and a warning is logged at most once a
/// second. The writer then records an `audit-system` / `audit.dropped` event with the number
/// lost, so a gap in the log is always visible in the log itself.
#[derive(Debug)]
pub struct JsonLinesSink {
    tx: mpsc::Sender<Event>,
    counters: Arc<Counters>,
    path: PathBuf,
    capacity: usize,
    started: Instant,
    /// Milliseconds since `started` before which no further drop warning is logged.
    next_drop_warning_ms: AtomicU64,
}

/// The handle on a [`JsonLinesSink`]'s writer task.
///
/// Call [`shutdown`](JsonLinesWriter::shutdown) when the proxy stops. If the handle is dropped
/// instead, the writer keeps running until every `Arc<JsonLinesSink>` is gone and the queue is
/// empty, unless the tokio runtime stops first, in which case queued events are lost.
#[derive(Debug)]
#[must_use = "call JsonLinesWriter::shutdown on stop, or queued audit events may be lost"]
pub struct JsonLinesWriter {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl JsonLinesSink {
    /// Opens (or creates) `path` for appending and starts the writer task on the current tokio
    /// runtime, with a queue of `capacity` events.
    ///
    /// A new file is created with mode 0600 on unix. An existing file keeps its permissions, but
    /// a warning is logged if group or others can access it.
    ///
    /// # Errors
    ///
    /// [`AuditError::ZeroCapacity`] if `capacity` is 0, [`AuditError::NoRuntime`] if not called
    /// from within a tokio runtime, [`AuditError::Open`] if the file cannot be opened.
    pub fn start(
        path: impl AsRef<Path>,
        capacity: usize,
    ) -> Result<(Arc<JsonLinesSink>, JsonLinesWriter), AuditError> {
        let path = path.as_ref().to_path_buf();
        if capacity == 0 {
            return Err(AuditError::ZeroCapacity);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuditError::NoRuntime)?;
        let file = open_append(&path).map_err(|source| AuditError::Open {
            path: path.clone(),
            source,
        })?;

        let (tx, rx) = mpsc::channel(capacity);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            rx,
            file: tokio::fs::File::from_std(file),
            counters: Arc::clone(&counters),
            path: path.clone(),
            capacity,
            reported_dropped: 0,
            buf: Vec::new(),
        };
        let task = runtime.spawn(writer.run(shutdown_rx));

        let sink = Arc::new(JsonLinesSink {
            tx,
            counters,
            path,
            capacity,
            started: Instant::now(),
            next_drop_warning_ms: AtomicU64::new(0),
        });
        Ok((
            sink,
            JsonLinesWriter {
                shutdown: shutdown_tx,
                task,
            },
        ))
    }

    /// The file this sink appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The queue capacity, in events.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many events were lost to write errors (each also logged at error level).
    pub fn write_errors(&self) -> u64 {
        self.counters.write_errors.load(Ordering::Relaxed)
    }

    fn record_drop(&self) -> EmitOutcome {
        let total = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_drop_warning_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_drop_warning_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(DROP_WARN_INTERVAL_MS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                dropped_total = total,
                capacity = self.capacity,
                path = %self.path.display(),
                "audit queue full or closed: dropping audit events"
            );
        }
        EmitOutcome::Dropped
    }
}

impl AuditSink for JsonLinesSink {
    fn emit(&self, event: Event) -> EmitOutcome {
        match self.tx.try_send(event) {
            Ok(()) => EmitOutcome::Queued,
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                self.record_drop()
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl JsonLinesWriter {
    /// Stops accepting events, writes and flushes everything already queued, syncs the file to
    /// disk, and waits for the writer task to finish.
    ///
    /// Events emitted after this is called are dropped and counted. If the wait must be
    /// bounded, wrap the call in `tokio::time::timeout`.
    pub async fn shutdown(self) {
        // An error means the task already ended, which the join below reports.
        let _ = self.shutdown.send(());
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "audit writer task failed");
        }
    }
}

/// Opens `path` for appending, creating it with mode 0600 (on unix) if it does not exist.
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "audit log is accessible to group or others; consider chmod 600"
            );
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        options.open(path)
    }
}

/// The writer task's state.
struct Writer {
    rx: mpsc::Receiver<Event>,
    file: tokio::fs::File,
    counters: Arc<Counters>,
    path: PathBuf,
    capacity: usize,
    /// The drop count already recorded in the file by an `audit.dropped` event.
    reported_dropped: u64,
    /// Serialized lines of the batch being written; reused between batches.
    buf: Vec<u8>,
}

impl Writer {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut shutdown_pending = true;
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut batch, BATCH) => {
                    // 0 means the queue is closed and empty: either shut down, or every
                    // sender is gone.
                    if n == 0 {
                        break;
                    }
                    self.write_batch(&mut batch).await;
                }
                signal = &mut shutdown, if shutdown_pending => {
                    shutdown_pending = false;
                    // Err: the handle was dropped without shutdown; keep draining until the
                    // senders are gone.
                    if signal.is_ok() {
                        // Refuses new events but keeps the queued ones for recv_many.
                        self.rx.close();
                    }
                }
            }
        }
        // Events dropped after the last batch (for example emitted during shutdown).
        self.write_batch(&mut batch).await;
        if let Err(err) = self.file.sync_all().await {
            tracing::error!(path = %self.path.display(), error = %err, "cannot sync audit log");
        }
    }

    /// Writes `batch` (emptying it) and, if events were dropped since the last report, an
    /// `audit.dropped` event; then flushes.
    async fn write_batch(&mut self, batch: &mut Vec<Event>) {
        self.buf.clear();
        let mut lines: u64 = 0;
        for event in batch.drain(..) {
            if self.encode(&event) {
                lines += 1;
            }
        }
        let dropped_total = self.counters.dropped.load(Ordering::Relaxed);
        let lost = dropped_total - self.reported_dropped;
        let mut reported = false;
        if lost > 0 {
            let notice = Event::new(Category::AuditSystem, "audit.dropped", Outcome::Error)
                .reason(format!(
                    "{lost} audit event(s) were dropped because the audit queue (capacity {}) was full or closed",
                    self.capacity
                ))
                .detail("dropped", lost)
                .detail("dropped_total", dropped_total);
            if self.encode(&notice) {
                lines += 1;
                reported = true;
            }
        }
        if lines == 0 {
            return;
        }
        match self.write_and_flush().await {
            Ok(()) => {
                if reported {
                    self.reported_dropped = dropped_total;
                }
            }
            Err(err) => {
                // The notice, if any, is retried with the next batch; the events are lost.
                let lost_events = lines - u64::from(reported);
                self.counters
                    .write_errors
                    .fetch_add(lost_events, Ordering::Relaxed);
                tracing::error!(
                    path = %self.path.display(),
                    error = %err,
                    events = lost_events,
                    "cannot write audit events"
                );
            }
        }
    }

    async fn write_and_flush(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.buf).await?;
        self.file.flush().await
    }

    /// Appends `event` as one line to the batch buffer; false if it could not be serialized.
    fn encode(&mut self, event: &Event) -> bool {
        let start = self.buf.len();
        match serde_json::to_writer(&mut self.buf, event) {
            Ok(()) => {
                self.buf.push(b'\n');
                true
            }
            Err(err) => {
                self.buf.truncate(start);
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    event_id = %event.event_id,
                    action = %event.action,
                    error = %err,
                    "cannot serialize audit event"
                );
                false
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(i: usize) -> Event {
        Event::new(Category::Connection, format!("test.{i}"), Outcome::Success)
            .client_addr("127.0.0.1:1")
            .detail("i", i)
    }

    fn read_lines(path: &Path) -> Vec<Event> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|line| serde_json::from_str::<Event>(line).expect(line))
            .collect()
    }

    #[tokio::test]
    async fn writes_one_json_line_per_event_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (sink, writer) = JsonLinesSink::start(&path, 1024).unwrap();
        let mut emitted = Vec::new();
        for i in 0..300 {
            let event = ev(i);
            emitted.push(event.clone());
            assert_eq!(sink.emit(event), EmitOutcome::Queued);
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        writer.shutdown().await;
        assert_eq!(read_lines(&path), emitted);
        assert_eq!(sink.dropped(), 0);
        assert_eq!(sink.write_errors(), 0);
    }

    #[tokio::test]
    async fn full_queue_drops_counts_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (sink, writer) = JsonLinesSink::start(&path, 4).unwrap();
        // The current-thread runtime cannot run the writer until we yield, so the queue fills.
        let outcomes: Vec<EmitOutcome> = (0..10).map(|i| sink.emit(ev(i))).collect();
        assert_eq!(&outcomes[..4], &[EmitOutcome::Queued; 4]);
        assert_eq!(&outcomes[4..], &[EmitOutcome::Dropped; 6]);
        assert_eq!(sink.dropped(), 6);

        // Once drained, the sink accepts events again.
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while sink.emit(ev(100)) == EmitOutcome::Dropped {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let dropped = sink.dropped();
        writer.shutdown().await;

        let lines = read_lines(&path);
        let actions: Vec<&str> = lines.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(&actions[..4], ["test.0", "test.1", "test.2", "test.3"]);
        assert_eq!(*actions.last().unwrap(), "test.100");
        let notices: Vec<&Event> = lines
            .iter()
            .filter(|e| e.action == "audit.dropped")
            .collect();
        assert!(!notices.is_empty());
        let first = notices[0];
        assert_eq!(first.category, Category::AuditSystem);
        assert_eq!(actions[4], "audit.dropped");
        let reported: u64 = notices
            .iter()
            .map(|n| n.details.as_ref().unwrap()["dropped"].as_u64().unwrap())
            .sum();
        assert_eq!(reported, dropped);
    }

    #[tokio::test]
    async fn shutdown_flushes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (sink, writer) = JsonLinesSink::start(&path, 10_000).unwrap();
        for i in 0..5_000 {
            assert_eq!(sink.emit(ev(i)), EmitOutcome::Queued);
        }
        writer.shutdown().await;
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 5_000);
        assert_eq!(lines[4_999].action, "test.4999");

        // After shutdown the queue is closed: events are dropped and counted, not queued.
        assert_eq!(sink.emit(ev(0)), EmitOutcome::Dropped);
        assert_eq!(sink.dropped(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_emitters_lose_nothing_silently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (sink, writer) = JsonLinesSink::start(&path, 64).unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    let mut queued = 0u64;
                    for i in 0..1_000 {
                        if sink.emit(ev(t * 1_000 + i)) == EmitOutcome::Queued {
                            queued += 1;
                        }
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    queued
                })
            })
            .collect();
        let mut queued = 0;
        for task in tasks {
            queued += task.await.unwrap();
        }
        writer.shutdown().await;

        let lines = read_lines(&path);
        let (notices, events): (Vec<_>, Vec<_>) =
            lines.iter().partition(|e| e.action == "audit.dropped");
        assert_eq!(events.len() as u64, queued);
        assert_eq!(queued + sink.dropped(), 8_000);
        let reported: u64 = notices
            .iter()
            .map(|n| n.details.as_ref().unwrap()["dropped"].as_u64().unwrap())
            .sum();
        assert_eq!(reported, sink.dropped());
    }

    #[tokio::test]
    async fn appends_to_an_existing_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for round in 0..2 {
            let (sink, writer) = JsonLinesSink::start(&path, 16).unwrap();
            sink.emit(ev(round));
            writer.shutdown().await;
        }
        let actions: Vec<String> = read_lines(&path).into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["test.0", "test.1"]);
    }

    #[tokio::test]
    async fn dropping_the_writer_handle_still_drains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (sink, writer) = JsonLinesSink::start(&path, 16).unwrap();
        let JsonLinesWriter { shutdown, task } = writer;
        drop(shutdown);
        sink.emit(ev(1));
        drop(sink);
        task.await.unwrap();
        assert_eq!(read_lines(&path).len(), 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn new_log_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (_sink, writer) = JsonLinesSink::start(&path, 1).unwrap();
        writer.shutdown().await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn start_needs_a_runtime_and_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert!(matches!(
            JsonLinesSink::start(&path, 8),
            Err(AuditError::NoRuntime)
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(matches!(
                JsonLinesSink::start(&path, 0),
                Err(AuditError::ZeroCapacity)
            ));
            let missing = dir.path().join("no-such-dir").join("audit.jsonl");
            let err = JsonLinesSink::start(&missing, 8).unwrap_err();
            assert!(matches!(err, AuditError::Open { .. }));
            assert!(err.to_string().contains("no-such-dir"), "{err}");
        });
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn write_errors_are_counted_not_fatal() {
        let path = Path::new("/dev/full");
        if !path.exists() {
            return;
        }
        let (sink, writer) = JsonLinesSink::start(path, 16).unwrap();
        for i in 0..3 {
            assert_eq!(sink.emit(ev(i)), EmitOutcome::Queued);
        }
        writer.shutdown().await;
        assert_eq!(sink.write_errors(), 3);
    }
}
