//! AWS Signature Version 4 for the few requests the KMS provider makes.
//!
//! Hand-written over aws-lc-rs's HMAC and SHA-256 (already the crate's crypto library) rather
//! than pulling in the AWS SDK: a KMS JSON request is a `POST /` with four or five headers,
//! which needs only the core of the algorithm. It is checked against AWS's published test
//! vectors in the tests below.

use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

/// The algorithm name in the string to sign and the `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What is signed: one HTTP request in canonical parts.
pub(crate) struct Request<'a> {
    /// `GET`, `POST`.
    pub method: &'a str,
    /// The URI path, already URI-encoded (`/` for KMS).
    pub path: &'a str,
    /// The canonical query string (parameters sorted and encoded; empty for KMS).
    pub query: &'a str,
    /// The headers to sign, as (name, value); names are lower-cased and sorted here.
    pub headers: &'a [(&'a str, &'a str)],
    /// The request body.
    pub payload: &'a [u8],
}

/// The scope and key a request is signed with.
pub(crate) struct Signer<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// The region (`us-east-1`).
    pub region: &'a str,
    /// The service (`kms`).
    pub service: &'a str,
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    Zeroizing::new(hmac::sign(&key, data).as_ref().to_vec())
}

/// The canonical request and the `;`-joined signed header names.
fn canonical_request(request: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            // Trim and collapse runs of spaces, as the canonical form requires.
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    let signed = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical = format!("{}\n{}\n{}\n", request.method, request.path, request.query);
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(&sha256_hex(request.payload));
    (canonical, signed)
}

impl Signer<'_> {
    /// The `Authorization` header value for `request` made at `amz_date`
    /// (`YYYYMMDD'T'HHMMSS'Z'`, also sent as `x-amz-date`, which must be among the headers).
    pub(crate) fn authorization(&self, request: &Request<'_>, amz_date: &str) -> String {
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let (canonical, signed) = canonical_request(request);
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let secret = Zeroizing::new(format!("AWS4{}", self.secret_access_key));
        let k_date = hmac_sha256(secret.as_bytes(), date.as_bytes());
        let k_region = hmac_sha256(&k_date, self.region.as_bytes());
        let k_service = hmac_sha256(&k_region, self.service.as_bytes());
        let k_signing = hmac_sha256(&k_service, b"aws4_request");
        let signature = hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()));
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            self.access_key_id
        )
    }
}

/// `(YYYYMMDD'T'HHMMSS'Z')` for a Unix time in seconds (UTC, proleptic Gregorian).
pub(crate) fn amz_date(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: Signer<'static> = Signer {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "service",
    };

    fn suite_request<'a>(query: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            path: "/",
            query,
            headers,
            payload: b"",
        }
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        assert_eq!(
            SUITE.authorization(&suite_request("", &headers), "20150830T123600Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        // get-vanilla-query-order-key-case (the query arrives canonical).
        assert!(SUITE
            .authorization(
                &suite_request("Param1=value1&Param2=value2", &headers),
                "20150830T123600Z"
            )
            .ends_with("b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
    }

    #[test]
    fn aws_s3_get_object_example() {
        // The GET Object example of the S3 SigV4 documentation: another key, service and
        // header set, and its canonical request hash is published too.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", empty),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let request = Request {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            payload: b"",
        };
        let (canonical, signed) = canonical_request(&request);
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let signer = Signer {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "s3",
        };
        assert!(signer
            .authorization(&request, "20130524T000000Z")
            .ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ));
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
    }
}
