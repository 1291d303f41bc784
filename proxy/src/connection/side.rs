//! One side of a proxied connection (the client, or the upstream broker): bounded frames in,
//! a queue of frames out, both driven by polling from the connection's single task.
//!
//! Reading and writing the same stream from one task without splitting it is what keeps a
//! connection to one task: no channel between halves, no lock around a split socket, no
//! cross-thread wake-up per frame. Writes never block reads: while a large frame goes out,
//! the other direction keeps flowing (a broker busy writing a big Fetch answer to the proxy
//! while the proxy writes it a big Produce cannot deadlock them).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::frame::{FrameError, FrameReader};

/// One side: its reader and what is queued for it.
#[derive(Debug)]
pub struct Side<S> {
    /// Frames from the peer.
    pub reader: FrameReader<S>,
    queue: VecDeque<Bytes>,
    /// Bytes of the queue's head already written.
    written: usize,
    queued_bytes: usize,
    needs_flush: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Side<S> {
    /// Wraps `stream`, accepting frames up to `max_frame` bytes.
    pub fn new(stream: S, max_frame: usize) -> Side<S> {
        Side {
            reader: FrameReader::new(stream, max_frame),
            queue: VecDeque::new(),
            written: 0,
            queued_bytes: 0,
            needs_flush: false,
        }
    }

    /// Queues `frame` for the peer.
    pub fn send(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.queued_bytes += frame.len();
            self.queue.push_back(frame);
        }
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.queued_bytes
    }

    /// Whether everything queued has been written and flushed.
    pub fn is_drained(&self) -> bool {
        self.queue.is_empty() && !self.needs_flush
    }

    /// Writes what it can of the queue; `Ready(Ok)` once all of it is written and flushed.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(head) = self.queue.front() {
            let stream = Pin::new(self.reader.get_mut());
            let n = match stream.poll_write(cx, &head[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.needs_flush = true;
            self.written += n;
            self.queued_bytes -= n;
            if self.written == head.len() {
                self.queue.pop_front();
                self.written = 0;
            }
        }
        if self.needs_flush {
            match Pin::new(self.reader.get_mut()).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                other => return other,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Polls for the peer's next frame.
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, FrameError>> {
        self.reader.poll_frame(cx)
    }
}
