//! One SASL login on a fresh connection that also reports the client's own address, so a
//! test can find the exact audit event the proxy wrote for it (`client_addr`). Used by the
//! crash test, where the question is "was this answered request's event kept?".
//!
//! [`crate::sasl_wire::RawClient`] does the same exchanges but hides its socket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use portcullis_auth::plain::PlainClient;
use portcullis_auth::scram::ScramClient;
use portcullis_auth::Mechanism;

/// What the proxy answered to a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAnswer {
    /// SaslAuthenticate succeeded.
    Success,
    /// SaslAuthenticate answered with this error code and message.
    Failure(i16, String),
}

struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> io::Result<Resp> {
        let mut body = self.call_raw(api, version, request)?;
        Resp::decode(&mut body, version).map_err(io::Error::other)
    }

    /// Sends `request` and returns the answer's body (after the response header).
    fn call_raw<Req: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> io::Result<Bytes> {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("audit-test")))
            .encode(&mut buf, api.request_header_version(version))
            .map_err(io::Error::other)?;
        request
            .encode(&mut buf, version)
            .map_err(io::Error::other)?;
        let len = i32::try_from(buf.len() - 4).map_err(io::Error::other)?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let n = usize::try_from(i32::from_be_bytes(len)).map_err(io::Error::other)?;
        if n > 1 << 20 {
            return Err(io::Error::other(format!("frame length {n}")));
        }
        let mut frame = vec![0u8; n];
        self.stream.read_exact(&mut frame)?;
        let mut body = Bytes::from(frame);
        let correlation = body.get_i32();
        if correlation != self.correlation {
            return Err(io::Error::other("correlation id mismatch"));
        }
        if api.response_header_version(version) >= 1 {
            // Tagged fields of a flexible response header: none expected.
            let _tags = body.get_u8();
        }
        Ok(body)
    }

    fn authenticate(&mut self, token: &[u8]) -> io::Result<SaslAuthenticateResponse> {
        self.call(
            ApiKey::SaslAuthenticate,
            1,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
        )
    }
}

fn failure(r: &SaslAuthenticateResponse) -> LoginAnswer {
    LoginAnswer::Failure(
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// Connects to `addr` and logs in with a password `mechanism` (PLAIN or SCRAM). Returns the
/// client's local address and the final answer; an I/O error means no final answer came
/// (the proxy died or closed the connection).
pub fn login(
    addr: &str,
    mechanism: &str,
    user: &str,
    password: &str,
) -> io::Result<(SocketAddr, LoginAnswer)> {
    let (mut c, local) = connect(addr)?;
    let answer = login_on(&mut c, mechanism, user, password)?;
    Ok((local, answer))
}

/// Logs in like [`login`] and, once in, sends `request` (api `api` at `version`) on the same
/// connection and decodes the answer; `Err` if the login or the call fails.
pub fn call_after_login<Req: Encodable, Resp: Decodable>(
    addr: &str,
    (mechanism, user, password): (&str, &str, &str),
    api: ApiKey,
    version: i16,
    request: &Req,
) -> io::Result<Resp> {
    let (mut c, _) = connect(addr)?;
    match login_on(&mut c, mechanism, user, password)? {
        LoginAnswer::Success => c.call(api, version, request),
        LoginAnswer::Failure(code, message) => {
            Err(io::Error::other(format!("login refused: {code} {message}")))
        }
    }
}

/// [`call_after_login`] returning the answer's raw body too, for tests that check what
/// bytes a client received.
pub fn call_after_login_raw<Resp: Decodable>(
    addr: &str,
    (mechanism, user, password): (&str, &str, &str),
    api: ApiKey,
    version: i16,
    request: &impl Encodable,
) -> io::Result<(Resp, Bytes)> {
    let (mut c, _) = connect(addr)?;
    match login_on(&mut c, mechanism, user, password)? {
        LoginAnswer::Success => {
            let raw = c.call_raw(api, version, request)?;
            let decoded = Resp::decode(&mut raw.clone(), version).map_err(io::Error::other)?;
            Ok((decoded, raw))
        }
        LoginAnswer::Failure(code, message) => {
            Err(io::Error::other(format!("login refused: {code} {message}")))
        }
    }
}

/// Sends `request` on a fresh connection without logging in (straight to a broker that
/// needs no authentication) and decodes the answer.
pub fn call_unauthenticated<Req: Encodable, Resp: Decodable>(
    addr: &str,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> io::Result<Resp> {
    let (mut c, _) = connect(addr)?;
    c.call(api, version, request)
}

fn connect(addr: &str) -> io::Result<(Conn, SocketAddr)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    Ok((
        Conn {
            stream,
            correlation: 0,
        },
        local,
    ))
}

fn login_on(c: &mut Conn, mechanism: &str, user: &str, password: &str) -> io::Result<LoginAnswer> {
    let hs: SaslHandshakeResponse = c.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )?;
    if hs.error_code != 0 {
        return Err(io::Error::other(format!(
            "handshake error {}",
            hs.error_code
        )));
    }
    let answer = match Mechanism::from_name(mechanism) {
        Some(Mechanism::Plain) => {
            let r = c.authenticate(&PlainClient::new(user, password).message())?;
            if r.error_code == 0 {
                LoginAnswer::Success
            } else {
                failure(&r)
            }
        }
        Some(m @ (Mechanism::ScramSha256 | Mechanism::ScramSha512)) => {
            let mut scram = ScramClient::new(m, user, password).map_err(io::Error::other)?;
            let first = c.authenticate(&scram.client_first())?;
            if first.error_code != 0 {
                return Ok(failure(&first));
            }
            let client_final = scram
                .handle_server_first(&first.auth_bytes)
                .map_err(io::Error::other)?;
            let last = c.authenticate(&client_final)?;
            if last.error_code != 0 {
                failure(&last)
            } else {
                scram
                    .handle_server_final(&last.auth_bytes)
                    .map_err(io::Error::other)?;
                LoginAnswer::Success
            }
        }
        _ => return Err(io::Error::other("not a password mechanism")),
    };
    Ok(answer)
}
