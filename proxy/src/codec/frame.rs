//! Kafka's length-prefixed framing, bounded.
//!
//! Every Kafka message travels as a 4-byte big-endian length followed by that many bytes.
//! `FrameReader` hands out whole frames *including* the length prefix, so a frame nobody
//! needs to inspect is forwarded with one write and no copy. The length is checked against
//! a limit before anything is allocated, and the buffer grows only as bytes actually
//! arrive beyond the first `UPFRONT_RESERVE` bytes: a peer that announces 100 MiB and sends
//! ten bytes costs at most 1 MiB of untouched reservation.

use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Size of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// How much of an announced frame is reserved before its bytes arrive. Typical frames
/// (produce batches, fetch responses) then arrive in one allocation; a peer that announces
/// a huge frame and sends nothing costs at most this much (and only as untouched memory).
/// Once this much of a larger frame has arrived, the rest of it is reserved in one step:
/// growing by doubling would copy the frame several times and, with an allocator that
/// cannot grow a block in place, hold the old and the new block at once (a 100 MiB frame
/// would peak near 200 MiB).
pub const UPFRONT_RESERVE: usize = 1024 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length is negative or above the limit.
    #[error("frame of {announced} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Length announced by the peer.
        announced: i64,
        /// The configured maximum.
        limit: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes received of the unfinished frame.
        buffered: usize,
    },
    /// The peer sent nothing for too long, or took too long to finish a frame.
    #[error("{}", if *in_frame { "frame not completed in time" } else { "connection idle for too long" })]
    Timeout {
        /// Whether a frame had started (slow sender) rather than none (idle).
        in_frame: bool,
    },
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads bounded frames from one side of a connection.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; frames whose body exceeds `max_frame` bytes are refused.
    pub fn new(inner: R, max_frame: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            max_frame,
        }
    }

    /// Changes the largest frame accepted from now on (a connection that authenticated may
    /// send larger frames than one that has not).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Gives the stream back; `Err` with the count of bytes already read past the last frame
    /// (which would be lost), so the caller can refuse to continue.
    pub fn into_inner(self) -> Result<R, usize> {
        if self.buf.is_empty() {
            Ok(self.inner)
        } else {
            Err(self.buf.len())
        }
    }

    /// The underlying stream (for writing on the same connection).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Like `next_frame`, but gives up when no byte arrives for `idle` between frames, or
    /// when a started frame is not complete within `frame_time` (slow-loris peers).
    pub async fn next_frame_timed(
        &mut self,
        idle: Duration,
        frame_time: Duration,
    ) -> Result<Option<Bytes>, FrameError> {
        let mut frame_deadline = (!self.buf.is_empty()).then(|| Instant::now() + frame_time);
        loop {
            if let Some(frame) = self.try_split_frame()? {
                return Ok(Some(frame));
            }
            let deadline = match frame_deadline {
                Some(d) => d,
                None => Instant::now() + idle,
            };
            let n = tokio::time::timeout_at(deadline, self.read_more())
                .await
                .map_err(|_| FrameError::Timeout {
                    in_frame: frame_deadline.is_some(),
                })??;
            if n == 0 {
                return self.end_of_stream();
            }
            frame_deadline.get_or_insert_with(|| Instant::now() + frame_time);
        }
    }

    /// Returns the next whole frame (prefix included), or `None` on a clean end of stream.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.try_split_frame()? {
                return Ok(Some(frame));
            }
            if self.read_more().await? == 0 {
                return self.end_of_stream();
            }
        }
    }

    /// Polls for the next whole frame (prefix included); `None` on a clean end of stream.
    /// Bytes read before `Pending` stay buffered, so polling can stop and resume at will.
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, FrameError>> {
        loop {
            if let Some(frame) = self.try_split_frame()? {
                return Poll::Ready(Ok(Some(frame)));
            }
            let read = {
                let read = self.read_more();
                tokio::pin!(read);
                ready!(read.poll(cx))?
            };
            if read == 0 {
                return Poll::Ready(self.end_of_stream());
            }
        }
    }

    /// Bytes received of a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads whatever the peer has sent next (cancel-safe: bytes read stay in the buffer),
    /// reserving room for the frame in progress first. Returns 0 at end of stream.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        let wanted = self.bytes_still_needed();
        let proven = self.buf.len() >= UPFRONT_RESERVE;
        self.buf
            .reserve(wanted.clamp(1, if proven { usize::MAX } else { UPFRONT_RESERVE }));
        self.inner.read_buf(&mut self.buf).await
    }

    /// The outcome of end of stream: clean between frames, an error inside one.
    fn end_of_stream(&self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.is_empty() {
            Ok(None)
        } else {
            Err(FrameError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }

    /// Bytes missing before the frame at the head of the buffer is complete.
    fn bytes_still_needed(&self) -> usize {
        match body_length(&self.buf) {
            Some(len) => (LENGTH_PREFIX + len).saturating_sub(self.buf.len()),
            None => LENGTH_PREFIX - self.buf.len(),
        }
    }

    fn try_split_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let announced = i64::from((&self.buf[..LENGTH_PREFIX]).get_i32());
        if announced < 0 || announced as u64 > self.max_frame as u64 {
            return Err(FrameError::TooLarge {
                announced,
                limit: self.max_frame,
            });
        }
        let total = LENGTH_PREFIX + announced as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(total).freeze()))
    }
}

/// The body length announced at the head of `buf`, if the prefix is there and non-negative.
fn body_length(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; LENGTH_PREFIX] = buf.get(..LENGTH_PREFIX)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(prefix)).ok()
}

/// A frame re-encoded from `original` (a request or response a stage changed): its header
/// bytes (`original[4..body_offset]`) as received, then the body `encode` writes, in one
/// buffer sized from the original (an eighth more for bodies that grew, such as encrypted
/// Produce requests), so a megabyte body is neither reallocated as it grows nor copied
/// again behind a length prefix.
///
/// # Errors
///
/// What `encode` returns, or a body too large for the length prefix.
pub fn reencoded_frame(
    original: &[u8],
    body_offset: usize,
    encode: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> anyhow::Result<Bytes> {
    let header = original.get(LENGTH_PREFIX..body_offset).unwrap_or_default();
    let mut out = BytesMut::with_capacity(original.len() + original.len() / 8 + 64);
    out.extend_from_slice(&[0; LENGTH_PREFIX]);
    out.extend_from_slice(header);
    encode(&mut out)?;
    let body_len = i32::try_from(out.len() - LENGTH_PREFIX)?;
    out[..LENGTH_PREFIX].copy_from_slice(&body_len.to_be_bytes());
    Ok(out.freeze())
}

/// Builds a frame (length prefix + `parts` concatenated).
pub fn build_frame(parts: &[&[u8]]) -> Bytes {
    let body_len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX + body_len);
    // Frames we build are responses of bounded size; saturate rather than wrap.
    out.extend_from_slice(&(i32::try_from(body_len).unwrap_or(i32::MAX)).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn read_all(input: Vec<u8>, max: usize) -> (Vec<Bytes>, Option<String>) {
        let mut reader = FrameReader::new(&input[..], max);
        let mut frames = Vec::new();
        loop {
            match reader.next_frame().await {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn splits_back_to_back_frames() {
        let mut input = build_frame(&[b"abc"]).to_vec();
        input.extend_from_slice(&build_frame(&[b"", b"de"]));
        let (frames, err) = read_all(input, 1024).await;
        assert_eq!(err, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0][4..], b"abc");
        assert_eq!(&frames[1][4..], b"de");
    }

    #[tokio::test]
    async fn refuses_oversized_and_negative_lengths_before_reading_body() {
        let (_, err) = read_all(1025i32.to_be_bytes().to_vec(), 1024).await;
        assert!(err.unwrap().contains("exceeds the limit"));
        let (_, err) = read_all((-1i32).to_be_bytes().to_vec(), 1024).await;
        assert!(err.unwrap().contains("exceeds the limit"));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error_not_a_hang() {
        let mut input = 10i32.to_be_bytes().to_vec();
        input.extend_from_slice(b"abc");
        let (frames, err) = read_all(input, 1024).await;
        assert!(frames.is_empty());
        assert!(err.unwrap().contains("middle of a frame"));
    }

    #[tokio::test]
    async fn huge_announcement_allocates_only_what_arrived() {
        let mut input = (100 * 1024 * 1024i32).to_be_bytes().to_vec();
        input.extend_from_slice(&[0u8; 10]);
        let mut reader = FrameReader::new(&input[..], 200 * 1024 * 1024);
        assert!(reader.next_frame().await.is_err());
        assert!(reader.buf.capacity() <= 2 * UPFRONT_RESERVE);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_frames_and_idle_peers_time_out() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(server, 1024);
        // Idle: nothing at all.
        let err = reader
            .next_frame_timed(Duration::from_secs(5), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Timeout { in_frame: false }));
        // Slow loris: a byte now, the rest never.
        tokio::io::AsyncWriteExt::write_all(&mut client, &[0, 0])
            .await
            .unwrap();
        let err = reader
            .next_frame_timed(Duration::from_secs(5), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Timeout { in_frame: true }));
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_and_frames_roundtrip(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            garbage in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut input = Vec::new();
            for b in &bodies {
                input.extend_from_slice(&build_frame(&[b]));
            }
            input.extend_from_slice(&garbage);
            let (frames, _err) = rt.block_on(read_all(input, 256));
            // Every well-formed frame under the limit before the garbage comes back intact.
            let expected: Vec<&Vec<u8>> = bodies.iter().take_while(|b| b.len() <= 256).collect();
            prop_assert!(frames.len() >= expected.len());
            for (f, b) in frames.iter().zip(expected.iter()) {
                prop_assert_eq!(&f[4..], &b[..]);
            }
        }
    }
}
