//! `tls_terminator`: the benchmark's reference path, a bare TLS -> TCP byte forwarder with
//! no Kafka awareness at all.
//!
//! ```text
//! tls_terminator --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT \
//!     --cert server.pem --key server.key --stats FILE
//! ```
//!
//! Every accepted connection is TLS-terminated (rustls with aws-lc-rs, TLS 1.3 and 1.2, the
//! same crypto the proxy uses) and its plaintext copied both ways to a new TCP connection to
//! `--upstream`, with TCP_NODELAY on both sides, reads under rustls batched through a
//! 64 KiB buffer and 256 KiB copy buffers. It shows the floor any TLS-terminating proxy can
//! reach on the machine: the proxy's TLS figure is only meaningful relative to it.
//!
//! Clients learn broker addresses from Metadata, which this program does not rewrite, so
//! the bench runs it in front of a broker that advertises the terminator's address. To let
//! the bench check that the client's traffic really went through it, it rewrites FILE every
//! 100 ms with two numbers: plaintext bytes forwarded to the upstream, and from it. It
//! prints `listening on ADDR` once it accepts connections, and runs until killed.
#![allow(clippy::expect_used)]

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Size of the buffer between the socket and rustls (rustls reads at most 4 KiB at a time).
const READ_BUFFER: usize = 64 * 1024;
/// Size of each direction's copy buffer.
const COPY_BUFFER: usize = 256 * 1024;

/// Command-line arguments.
struct Args {
    listen: String,
    upstream: String,
    cert: PathBuf,
    key: PathBuf,
    stats: PathBuf,
}

/// Plaintext bytes forwarded to the upstream (`sent`) and from it (`received`), over all
/// connections.
#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    received: AtomicU64,
}

/// The upstream socket, counting what passes through it into [`Totals`].
struct Counted<S> {
    inner: S,
    totals: Arc<Totals>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.totals.received.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.totals.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Rewrites `path` with the totals every 100 ms.
async fn publish_totals(path: PathBuf, totals: Arc<Totals>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let line = format!(
            "{} {}\n",
            totals.sent.load(Ordering::Relaxed),
            totals.received.load(Ordering::Relaxed)
        );
        let staged = path.with_extension("tmp");
        if tokio::fs::write(&staged, line).await.is_ok() {
            let _ = tokio::fs::rename(&staged, &path).await;
        }
    }
}

fn parse_args() -> Args {
    let mut listen = None;
    let mut upstream = None;
    let mut cert = None;
    let mut key = None;
    let mut stats = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--upstream" => upstream = Some(value),
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            "--stats" => stats = Some(PathBuf::from(value)),
            other => {
                panic!("unknown flag {other}; flags: --listen --upstream --cert --key --stats")
            }
        }
    }
    Args {
        listen: listen.expect("--listen ADDR"),
        upstream: upstream.expect("--upstream ADDR"),
        cert: cert.expect("--cert PEM"),
        key: key.expect("--key PEM"),
        stats: stats.expect("--stats FILE"),
    }
}

/// A rustls server config like the proxy's: aws-lc-rs, TLS 1.3 and 1.2, no client auth.
fn server_config(cert: &PathBuf, key: &PathBuf) -> Arc<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("open certificate")
        .collect::<Result<_, _>>()
        .expect("parse certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("parse key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    Arc::new(config)
}

/// Terminates TLS on `tcp` and forwards its plaintext to `upstream` until either side ends.
async fn serve(
    tcp: TcpStream,
    upstream: Arc<str>,
    acceptor: TlsAcceptor,
    totals: Arc<Totals>,
) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let broker = TcpStream::connect(&*upstream).await?;
    broker.set_nodelay(true)?;
    let broker = Counted {
        inner: broker,
        totals,
    };
    let client = acceptor
        .accept(BufReader::with_capacity(READ_BUFFER, tcp))
        .await?;
    forward(client, broker).await
}

/// Copies bytes both ways until either side ends.
async fn forward<A, B>(mut a: A, mut b: B) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUFFER, COPY_BUFFER).await?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let acceptor = TlsAcceptor::from(server_config(&args.cert, &args.key));
    let upstream: Arc<str> = args.upstream.into();
    let totals = Arc::new(Totals::default());
    tokio::spawn(publish_totals(args.stats, totals.clone()));
    let listener = TcpListener::bind(&args.listen)
        .await
        .expect("bind --listen");
    println!("listening on {}", args.listen);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (upstream, acceptor, totals) = (upstream.clone(), acceptor.clone(), totals.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, upstream, acceptor, totals).await {
                eprintln!("connection ended: {e}");
            }
        });
    }
}
