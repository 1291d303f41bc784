//! A blocking, raw Kafka client for authentication tests that need to see exactly what the
//! proxy answers: SaslHandshake/SaslAuthenticate error codes and messages, the session
//! lifetime, the legacy v0 flow, and the moment a connection is closed. Real client
//! libraries hide all of these behind retries.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use portcullis_auth::plain::PlainClient;
use portcullis_auth::scram::ScramClient;
use portcullis_auth::Mechanism;

/// How a SASL exchange ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResult {
    /// Authenticated; the session lifetime the proxy announced (ms, 0 = none).
    Ok {
        /// `session_lifetime_ms` of the last SaslAuthenticate response.
        session_lifetime_ms: i64,
    },
    /// SaslHandshake answered with an error code.
    Handshake {
        /// Error code.
        code: i16,
        /// Mechanisms the proxy listed.
        mechanisms: Vec<String>,
    },
    /// SaslAuthenticate answered with an error code.
    Failed {
        /// Error code.
        code: i16,
        /// Error message.
        message: String,
    },
}

/// One raw connection.
pub struct RawClient {
    stream: TcpStream,
    correlation: i32,
}

impl RawClient {
    /// Connects to `addr` with a 10 s read timeout.
    pub fn connect(addr: &str) -> io::Result<RawClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            correlation: 0,
        })
    }

    /// Connects to `addr` from the local address `source` (another loopback address such
    /// as 127.0.0.2 plays another host: Linux routes all of 127.0.0.0/8 to `lo`).
    pub fn connect_from(addr: &str, source: IpAddr) -> io::Result<RawClient> {
        let stream = connect_from(addr, source)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            correlation: 0,
        })
    }

    /// Sends `request` as `api` v`version` and decodes the answer.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> io::Result<Resp> {
        self.correlation += 1;
        let correlation = self.correlation;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")))
            .encode(&mut buf, api.request_header_version(version))
            .map_err(io::Error::other)?;
        request
            .encode(&mut buf, version)
            .map_err(io::Error::other)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf)?;
        let mut body = Bytes::from(self.read_frame()?);
        let got = body.get_i32();
        if got != correlation {
            return Err(io::Error::other(format!(
                "correlation id {got}, expected {correlation}"
            )));
        }
        if api.response_header_version(version) >= 1 {
            // Tagged fields of the response header: none expected.
            let _ = body.get_u8();
        }
        Resp::decode(&mut body, version).map_err(io::Error::other)
    }

    /// Sends a frame with no Kafka header (legacy SASL tokens).
    pub fn send_raw(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut buf = (payload.len() as i32).to_be_bytes().to_vec();
        buf.extend_from_slice(payload);
        self.stream.write_all(&buf)
    }

    /// Reads one frame's body.
    pub fn read_frame(&mut self) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if !(0..=64 * 1024 * 1024).contains(&len) {
            return Err(io::Error::other(format!("frame length {len}")));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(body)
    }

    /// Whether the proxy closes the connection within `within` (reads EOF or a reset).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(within));
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }

    /// A Metadata v4 request for no topics; `Err` when the connection is closed.
    pub fn metadata(&mut self) -> io::Result<MetadataResponse> {
        self.call(
            ApiKey::Metadata,
            4,
            &MetadataRequest::default().with_topics(Some(Vec::new())),
        )
    }

    /// SaslHandshake v`version` for `mechanism`.
    pub fn handshake(
        &mut self,
        version: i16,
        mechanism: &str,
    ) -> io::Result<SaslHandshakeResponse> {
        self.call(
            ApiKey::SaslHandshake,
            version,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(mechanism.to_string())),
        )
    }

    /// SaslAuthenticate v1 with `token`.
    pub fn authenticate(&mut self, token: &[u8]) -> io::Result<SaslAuthenticateResponse> {
        self.call(
            ApiKey::SaslAuthenticate,
            1,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
        )
    }

    /// A full handshake + authenticate exchange with a password mechanism.
    pub fn login_password(
        &mut self,
        mechanism: &str,
        username: &str,
        password: &str,
    ) -> io::Result<SaslResult> {
        if let Some(result) = self.handshake_ok(mechanism)? {
            return Ok(result);
        }
        match Mechanism::from_name(mechanism) {
            Some(Mechanism::Plain) => {
                let message = PlainClient::new(username, password).message();
                self.authenticate_step(&message)
            }
            Some(m @ (Mechanism::ScramSha256 | Mechanism::ScramSha512)) => {
                let mut scram =
                    ScramClient::new(m, username, password).map_err(io::Error::other)?;
                let first = self.authenticate(&scram.client_first())?;
                if first.error_code != 0 {
                    return Ok(failed(&first));
                }
                let client_final = scram
                    .handle_server_first(&first.auth_bytes)
                    .map_err(io::Error::other)?;
                let last = self.authenticate(&client_final)?;
                if last.error_code != 0 {
                    return Ok(failed(&last));
                }
                scram
                    .handle_server_final(&last.auth_bytes)
                    .map_err(io::Error::other)?;
                Ok(SaslResult::Ok {
                    session_lifetime_ms: last.session_lifetime_ms,
                })
            }
            _ => Err(io::Error::other(format!(
                "{mechanism} is not a password mechanism"
            ))),
        }
    }

    /// A full OAUTHBEARER exchange with `token` (RFC 7628 error flow included).
    pub fn login_oauth(&mut self, token: &str) -> io::Result<SaslResult> {
        if let Some(result) = self.handshake_ok("OAUTHBEARER")? {
            return Ok(result);
        }
        let first = format!("n,,\x01auth=Bearer {token}\x01\x01");
        let response = self.authenticate(first.as_bytes())?;
        if response.error_code != 0 {
            return Ok(failed(&response));
        }
        if !response.auth_bytes.is_empty() {
            // The JSON error status; acknowledge it to get the failure.
            return self.authenticate_step(b"\x01");
        }
        Ok(SaslResult::Ok {
            session_lifetime_ms: response.session_lifetime_ms,
        })
    }

    fn handshake_ok(&mut self, mechanism: &str) -> io::Result<Option<SaslResult>> {
        let handshake = self.handshake(1, mechanism)?;
        if handshake.error_code != 0 {
            return Ok(Some(SaslResult::Handshake {
                code: handshake.error_code,
                mechanisms: handshake.mechanisms.iter().map(|m| m.to_string()).collect(),
            }));
        }
        Ok(None)
    }

    fn authenticate_step(&mut self, token: &[u8]) -> io::Result<SaslResult> {
        let response = self.authenticate(token)?;
        if response.error_code != 0 {
            return Ok(failed(&response));
        }
        Ok(SaslResult::Ok {
            session_lifetime_ms: response.session_lifetime_ms,
        })
    }
}

fn failed(response: &SaslAuthenticateResponse) -> SaslResult {
    SaslResult::Failed {
        code: response.error_code,
        message: response
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    }
}

/// A TCP connection to `addr` from `source` (port chosen by the system).
pub fn connect_from(addr: &str, source: IpAddr) -> io::Result<TcpStream> {
    let target: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr} resolves to nothing")))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}
