//! Connections from the proxy to the Kafka cluster.
//!
//! Each client connection gets its own upstream connection (opened only once the client
//! needs the cluster), plaintext or TLS. `KafkaClient` is the proxy acting as a Kafka client
//! itself, used by cluster discovery for ApiVersions and Metadata.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::frame::FrameReader;
use crate::codec::header::peek_response_header;
use crate::config::{split_host_port, UpstreamConfig};
use crate::net::tls::{upstream_connector, upstream_server_name};
use crate::net::upstream_sasl::UpstreamCredentials;

/// A byte stream to a broker, plaintext or TLS.
pub trait UpstreamStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> UpstreamStream for T {}

/// A boxed upstream stream.
pub type BoxedStream = Box<dyn UpstreamStream>;

/// Why the proxy could not reach or talk to a broker.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Broker address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake with the broker failed.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// Broker address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// A request/response exchange failed.
    #[error("{0}")]
    Protocol(String),
    /// The proxy's own SASL login was refused or failed.
    #[error("SASL login to {addr} failed: {reason}")]
    Authentication {
        /// Broker address.
        addr: String,
        /// What went wrong (never a secret).
        reason: String,
    },
}

/// Opens upstream connections according to the configuration.
pub struct Connector {
    bootstrap: Vec<(String, u16)>,
    next_bootstrap: AtomicUsize,
    timeout: Duration,
    tls: Option<(tokio_rustls::TlsConnector, crate::config::UpstreamTlsConfig)>,
    credentials: Option<UpstreamCredentials>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("bootstrap", &self.bootstrap)
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Connector {
    /// Builds a connector (loads upstream TLS material if configured).
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let bootstrap = config
            .bootstrap_servers
            .iter()
            .map(|s| {
                split_host_port(s).ok_or_else(|| {
                    anyhow::anyhow!("upstream.bootstrap_servers: {s:?} is not host:port")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tls = match &config.tls {
            Some(tls) => Some((upstream_connector(tls)?, tls.clone())),
            None => None,
        };
        let credentials = match &config.sasl {
            Some(sasl) => Some(UpstreamCredentials::from_config(sasl)?),
            None => None,
        };
        Ok(Self {
            bootstrap,
            next_bootstrap: AtomicUsize::new(0),
            timeout: Duration::from_millis(config.connect_timeout_ms),
            tls,
            credentials,
        })
    }

    /// Connects to one of the bootstrap servers, trying each once starting from a rotating
    /// position.
    pub async fn connect_bootstrap(&self) -> Result<BoxedStream, UpstreamError> {
        let start = self.next_bootstrap.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..self.bootstrap.len() {
            let (host, port) = &self.bootstrap[(start + i) % self.bootstrap.len()];
            match self.connect(host, *port).await {
                Ok(s) => return Ok(s),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| UpstreamError::Connect {
            addr: "bootstrap".into(),
            reason: "no bootstrap servers configured".into(),
        }))
    }

    /// Connects to `host:port`, with TLS and the proxy's SASL login if configured.
    pub async fn connect(&self, host: &str, port: u16) -> Result<BoxedStream, UpstreamError> {
        let stream = self.connect_transport(host, port).await?;
        match &self.credentials {
            None => Ok(stream),
            Some(credentials) => {
                crate::net::upstream_sasl::login(
                    stream,
                    credentials,
                    self.timeout,
                    &format!("{host}:{port}"),
                )
                .await
            }
        }
    }

    async fn connect_transport(&self, host: &str, port: u16) -> Result<BoxedStream, UpstreamError> {
        let addr = format!("{host}:{port}");
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| UpstreamError::Connect {
                addr: addr.clone(),
                reason: format!("timed out after {:?}", self.timeout),
            })?
            .map_err(|e| UpstreamError::Connect {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, tls_config)) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = upstream_server_name(tls_config, host).map_err(|e| UpstreamError::Tls {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
        let tls = tokio::time::timeout(self.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| UpstreamError::Tls {
                addr: addr.clone(),
                reason: "handshake timed out".into(),
            })?
            .map_err(|e| UpstreamError::Tls {
                addr,
                reason: e.to_string(),
            })?;
        Ok(Box::new(tls))
    }
}

/// The proxy speaking Kafka to a broker on its own behalf (cluster discovery).
pub struct KafkaClient {
    stream: FrameReader<BoxedStream>,
    next_correlation: i32,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient").finish_non_exhaustive()
    }
}

impl KafkaClient {
    /// Wraps a connected stream; responses larger than `max_frame` are refused.
    pub fn new(stream: BoxedStream, max_frame: usize, timeout: Duration) -> Self {
        Self {
            stream: FrameReader::new(stream, max_frame),
            next_correlation: 1,
            timeout,
        }
    }

    /// Gives the stream back for raw use; refuses if a response arrived that nobody read.
    pub fn into_inner(self) -> Result<BoxedStream, UpstreamError> {
        self.stream.into_inner().map_err(|extra| {
            UpstreamError::Protocol(format!("{extra} unexpected bytes from the broker"))
        })
    }

    /// Asks the broker which api versions it speaks (ApiVersions v0).
    pub async fn api_versions(&mut self) -> Result<ApiVersionsResponse, UpstreamError> {
        let versions: ApiVersionsResponse = self
            .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
            .await?;
        if versions.error_code != 0 {
            return Err(UpstreamError::Protocol(format!(
                "ApiVersions failed with error code {}",
                versions.error_code
            )));
        }
        Ok(versions)
    }

    /// Sends `request` as `api` v`version` and decodes the response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, UpstreamError> {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = encode_request(api, version, correlation_id, request)
            .map_err(|e| UpstreamError::Protocol(format!("encode {api:?}: {e}")))?;
        let exchange = async {
            self.stream.get_mut().write_all(&frame).await?;
            self.stream.get_mut().flush().await?;
            self.stream
                .next_frame()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Protocol(format!("{api:?} timed out")))?
            .map_err(|e| UpstreamError::Protocol(format!("{api:?}: {e}")))?
            .ok_or_else(|| UpstreamError::Protocol(format!("{api:?}: connection closed")))?;
        let header_version = api.response_header_version(version);
        let (got, body_offset) = peek_response_header(&response, header_version)
            .map_err(|e| UpstreamError::Protocol(format!("{api:?} response: {e}")))?;
        if got != correlation_id {
            return Err(UpstreamError::Protocol(format!(
                "{api:?}: correlation id {got}, expected {correlation_id}"
            )));
        }
        let mut body = response.slice(body_offset..);
        Resp::decode(&mut body, version)
            .map_err(|e| UpstreamError::Protocol(format!("decode {api:?} v{version}: {e}")))
    }
}

/// Encodes a whole request frame with the proxy's client id.
pub fn encode_request<Req: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("portcullis")));
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header.encode(&mut buf, api.request_header_version(version))?;
    request.encode(&mut buf, version)?;
    let len = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}
