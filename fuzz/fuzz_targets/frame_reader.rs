//! `FrameReader` over arbitrary bytes: the first thing every client and broker byte meets.
//!
//! Input layout: byte 0 picks the read style (bit 0: `next_frame_timed` instead of
//! `next_frame`) and how many bytes the fake socket hands out per read (bits 1..8, so
//! 1..=128 bytes), exercising frames split across reads; the rest is the stream.
//!
//! Checked beyond "no panic": every frame is a prefix plus exactly the body it announces,
//! never above the limit, and the frames concatenated are exactly the start of the stream.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use portcullis::codec::frame::{FrameReader, LENGTH_PREFIX};
use tokio::io::{AsyncRead, ReadBuf};

const MAX_FRAME: usize = 4096;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("cannot build the tokio runtime: {e}"))
});

/// A socket that delivers `data` at most `chunk` bytes per read, then end of stream.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let timed = control & 1 == 1;
    let chunk = usize::from(control >> 1) + 1;
    RUNTIME.block_on(async {
        let mut reader = FrameReader::new(
            Trickle {
                data: stream,
                chunk,
            },
            MAX_FRAME,
        );
        let mut consumed = 0usize;
        loop {
            let next = if timed {
                reader
                    .next_frame_timed(Duration::from_secs(3600), Duration::from_secs(3600))
                    .await
            } else {
                reader.next_frame().await
            };
            match next {
                Ok(Some(frame)) => {
                    assert!(frame.len() >= LENGTH_PREFIX);
                    let body = frame.len() - LENGTH_PREFIX;
                    assert!(body <= MAX_FRAME, "frame body {body} above the limit");
                    let announced = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                    assert_eq!(usize::try_from(announced).ok(), Some(body));
                    assert_eq!(&frame[..], &stream[consumed..consumed + frame.len()]);
                    consumed += frame.len();
                }
                Ok(None) => {
                    assert_eq!(consumed, stream.len(), "clean end with bytes left over");
                    break;
                }
                Err(_) => break,
            }
        }
    });
});
