//! `portcullis audit ...` against a running proxy, through its admin HTTP API
//! ([`crate::admin_api`]): the same commands and output as on a data directory.
//!
//! A running proxy holds sled's exclusive lock on its log, so the CLI cannot open the store;
//! the proxy answers instead. The client is deliberately tiny: blocking HTTP/1.1 over a
//! `std::net::TcpStream`, plain HTTP only, because the admin listener is meant to be bound to
//! loopback (or reached through an operator's tunnel), and a full HTTP stack in the CLI would
//! only add attack surface.
//!
//! `verify` against a running proxy is computed by the proxy. For assurance that does not
//! depend on the proxy host, export a range (`export --admin ...`) and check it with
//! `verify-export`, which runs entirely on the auditor's machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::admin_api::{ExportAnswer, VerifyAnswer, VerifyRequest};
use crate::cli::{print_table, AuditCommand, CliError, ExitCodeLike, QueryOutput};
use crate::event::Event;
use crate::read::ProofFile;

/// How long one HTTP exchange with the admin API may take (verification of a large log is
/// the slow one).
const HTTP_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest answer accepted (an export of a large range is the big one).
const MAX_BODY: usize = 1 << 30;

/// An admin API base address: `http://host:port` (a path prefix is kept) or `host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminUrl {
    /// `host:port` to connect to.
    pub authority: String,
    /// Path prefix without a trailing slash (usually empty).
    pub prefix: String,
    /// Sent as `Authorization: Bearer` (the proxy's `admin.token_file`), if set.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUrl")
            .field("authority", &self.authority)
            .field("prefix", &self.prefix)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .finish()
    }
}

impl AdminUrl {
    /// Parses `http://host:port[/prefix]` or `host:port`.
    ///
    /// # Errors
    ///
    /// [`CliError::Input`] for other schemes or a missing port.
    pub fn parse(url: &str) -> Result<AdminUrl, CliError> {
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.contains("://") {
            return Err(CliError::Input(format!(
                "--admin {url}: only plain http:// is supported (bind the admin listener to loopback or tunnel to it)"
            )));
        } else {
            url
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if !authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            return Err(CliError::Input(format!(
                "--admin {url}: expected http://HOST:PORT"
            )));
        }
        Ok(AdminUrl {
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            token: None,
        })
    }
}

/// A response: status code and body.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

fn remote_err(url: &AdminUrl, e: impl std::fmt::Display) -> CliError {
    CliError::Remote(format!("admin API {}: {e}", url.authority))
}

/// One HTTP/1.1 exchange (`Connection: close`).
fn exchange(
    url: &AdminUrl,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<HttpResponse, CliError> {
    let mut stream = TcpStream::connect(&url.authority).map_err(|e| remote_err(url, e))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| remote_err(url, e))?;
    let mut request = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\n",
        url.prefix, url.authority
    );
    if let Some(token) = &url.token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(b) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if method == "POST" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| body.map_or(Ok(()), |b| stream.write_all(b)))
        .map_err(|e| remote_err(url, e))?;
    read_response(BufReader::new(stream)).map_err(|e| remote_err(url, e))
}

fn read_response<R: BufRead>(mut r: R) -> Result<HttpResponse, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", line.trim_end()))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed in the headers".into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().map_err(|_| "bad Content-Length")?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| "bad chunk size")?;
            if size == 0 {
                break;
            }
            if body.len().saturating_add(size) > MAX_BODY {
                return Err("answer too large".into());
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])
                .map_err(|e| e.to_string())?;
            line.clear();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err("answer too large".into());
        }
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
    } else {
        r.take(MAX_BODY as u64)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
    }
    Ok(HttpResponse { status, body })
}

/// GET/POST `path`; non-2xx answers become [`CliError::Remote`] with the server's message.
/// Also used by the proxy's other admin commands (`portcullis keys --admin`).
///
/// # Errors
///
/// [`CliError::Remote`] when the proxy cannot be reached or answers non-2xx.
pub fn call(
    url: &AdminUrl,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Vec<u8>, CliError> {
    let resp = exchange(url, method, path, body)?;
    if (200..300).contains(&resp.status) {
        Ok(resp.body)
    } else {
        Err(CliError::Remote(format!(
            "{method} {path}: HTTP {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body).trim()
        )))
    }
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CliError> {
    serde_json::from_slice(bytes).map_err(|e| CliError::Remote(format!("bad {what} answer: {e}")))
}

/// Percent-encodes a query-string component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'*') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

fn print_events(events: &[Event], out: &mut dyn Write) -> Result<(), CliError> {
    for e in events {
        writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default())?;
    }
    Ok(())
}

/// Runs one command against the admin API at `url`, presenting `token` (the proxy's
/// `admin.token_file`) if given. The offline commands (`verify-proof`, `verify-export`) run
/// locally as usual.
///
/// # Errors
///
/// [`CliError`] when the command cannot run (proxy unreachable, HTTP error, bad input).
pub fn run_remote(
    url: &str,
    token: Option<String>,
    cmd: AuditCommand,
    out: &mut dyn Write,
) -> Result<ExitCodeLike, CliError> {
    let url = AdminUrl {
        token,
        ..AdminUrl::parse(url)?
    };
    match cmd {
        cmd @ (AuditCommand::VerifyProof { .. } | AuditCommand::VerifyExport { .. }) => {
            crate::cli::run(Path::new(""), cmd, out)
        }
        AuditCommand::Query {
            since,
            until,
            principal,
            category,
            action,
            outcome,
            resource,
            client_addr,
            newest_first,
            limit,
            output,
        } => {
            let mut q = vec![format!("limit={limit}")];
            let mut add = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    q.push(format!("{k}={}", encode(&v)));
                }
            };
            add("since", since);
            add("until", until);
            add("principal", principal);
            add("category", category.map(|c| c.as_str().to_string()));
            add("action", action);
            add("outcome", outcome.map(|o| o.as_str().to_string()));
            add("resource", resource);
            add("client_addr", client_addr);
            if newest_first {
                q.push("newest_first=true".into());
            }
            let body = call(&url, "GET", &format!("/audit/query?{}", q.join("&")), None)?;
            let events: Vec<Event> = json(&body, "query")?;
            match output {
                QueryOutput::Json => print_events(&events, out)?,
                QueryOutput::Table => print_table(&events, out)?,
            }
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Tail { lines, follow } => {
            let body = call(&url, "GET", &format!("/audit/tail?n={lines}"), None)?;
            let events: Vec<Event> = json(&body, "tail")?;
            print_events(&events, out)?;
            if !follow {
                return Ok(ExitCodeLike::Success);
            }
            let mut last = events.last().and_then(|e| e.seq);
            loop {
                out.flush()?;
                std::thread::sleep(Duration::from_millis(500));
                let path = match last {
                    Some(seq) => format!("/audit/tail?n=10000&after={seq}"),
                    None => "/audit/tail?n=10000".to_string(),
                };
                let events: Vec<Event> = json(&call(&url, "GET", &path, None)?, "tail")?;
                print_events(&events, out)?;
                if let Some(seq) = events.last().and_then(|e| e.seq) {
                    last = Some(seq);
                }
            }
        }
        AuditCommand::Verify {
            since_checkpoint,
            anchor,
            anchor_topic: _,
            shared_anchor,
            key,
        } => {
            let request = VerifyRequest {
                keys: crate::cli::parse_keys(&key)?
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                since_checkpoint: since_checkpoint.as_deref().map(read_text).transpose()?,
                anchor: anchor.as_deref().map(read_text).transpose()?,
                shared_anchor,
            };
            let body = serde_json::to_vec(&request).map_err(|e| CliError::Input(e.to_string()))?;
            let answer: VerifyAnswer =
                json(&call(&url, "POST", "/audit/verify", Some(&body))?, "verify")?;
            write!(out, "{}", answer.report)?;
            writeln!(
                out,
                "(verified by the proxy at {}; for verification off the proxy host use export + verify-export)",
                url.authority
            )?;
            Ok(if answer.ok {
                ExitCodeLike::Success
            } else {
                ExitCodeLike::VerificationFailed
            })
        }
        AuditCommand::Prove { seq, out: file } => {
            let proof: ProofFile = json(
                &call(&url, "GET", &format!("/audit/prove/{seq}"), None)?,
                "prove",
            )?;
            let text =
                serde_json::to_string_pretty(&proof).map_err(|e| CliError::Input(e.to_string()))?;
            match file {
                Some(path) => {
                    std::fs::write(&path, text + "\n")?;
                    writeln!(
                        out,
                        "wrote inclusion proof of entry {seq} in tree size {} to {}",
                        proof.tree_size,
                        path.display()
                    )?;
                }
                None => writeln!(out, "{text}")?,
            }
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Export {
            format,
            from,
            to,
            out: dir,
        } => {
            let mut q = vec![format!(
                "format={}",
                match format {
                    crate::export::ExportFormat::Jsonl => "jsonl",
                    crate::export::ExportFormat::Ocsf => "ocsf",
                }
            )];
            if let Some(f) = from {
                q.push(format!("from={f}"));
            }
            if let Some(t) = to {
                q.push(format!("to={t}"));
            }
            let answer: ExportAnswer = json(
                &call(&url, "GET", &format!("/audit/export?{}", q.join("&")), None)?,
                "export",
            )?;
            crate::export::create_export_dir(&dir)
                .map_err(|e| CliError::Remote(format!("{}: {e}", dir.display())))?;
            for (name, text) in &answer.files {
                // Only plain file names: a hostile server must not write outside `dir`.
                if name.contains(['/', '\\']) || name.starts_with('.') || name.is_empty() {
                    return Err(CliError::Remote(format!(
                        "export file name {name:?} refused"
                    )));
                }
                // New files only: never through a link planted in `dir`.
                crate::export::create_export_file(&dir.join(name))?.write_all(text.as_bytes())?;
            }
            writeln!(
                out,
                "exported entries {}..{} with {} checkpoint(s) to {}",
                answer.from,
                answer.to,
                answer.checkpoints,
                dir.display()
            )?;
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Checkpoint => {
            let body = call(&url, "GET", "/audit/checkpoint", None)?;
            out.write_all(&body)?;
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Pubkey { all } => {
            let body = call(&url, "GET", "/audit/pubkey", None)?;
            let text = String::from_utf8_lossy(&body);
            let keys: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            if all {
                for k in &keys {
                    writeln!(out, "{k}")?;
                }
            } else if let Some(k) = keys.last() {
                writeln!(out, "{k}")?;
            }
            Ok(ExitCodeLike::Success)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_parse() {
        let u = AdminUrl::parse("http://127.0.0.1:9190").unwrap();
        assert_eq!(u.authority, "127.0.0.1:9190");
        assert_eq!(u.prefix, "");
        let u = AdminUrl::parse("localhost:80/admin/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("localhost:80", "/admin")
        );
        assert!(AdminUrl::parse("https://x:1").is_err());
        assert!(AdminUrl::parse("http://nohost").is_err());
    }

    #[test]
    fn responses_parse_with_length_chunks_or_eof() {
        let r = read_response(&b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcdef"[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        let r = read_response(
            &b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"[..],
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        let r = read_response(&b"HTTP/1.1 200 OK\r\n\r\nxyz"[..]).unwrap();
        assert_eq!(r.body, b"xyz");
        assert!(read_response(&b"garbage\r\n\r\n"[..]).is_err());
        assert!(read_response(&b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"[..]).is_err());
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode("User:alice smith"), "User%3Aalice%20smith");
        assert_eq!(encode("sasl.*"), "sasl.*");
    }
}
