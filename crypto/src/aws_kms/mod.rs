//! The AWS KMS root-key provider: the root key is a symmetric KMS key and never leaves KMS.
//!
//! A KEK is wrapped with `TrentService.Encrypt` and unwrapped with `TrentService.Decrypt`,
//! both naming the key by the ARN resolved at start (`DescribeKey`), with the
//! [`WrapContext::pairs`] as the KMS *encryption context*
//! (`portcullis.topic`, `portcullis.kek_version`): KMS binds it to the ciphertext, so a
//! wrapped KEK copied to another topic or version fails to decrypt, and CloudTrail records it
//! with every call. The stored blob is the KMS `CiphertextBlob` as KMS returned it.
//!
//! Why not the AWS SDK for Rust: `aws-sdk-kms` with `aws-config` resolves to about 200
//! packages (an async stack) for four JSON calls; this provider added seven to the workspace. This provider is a SigV4 signer (module `sigv4`, checked against
//! AWS's test vectors) and ureq, a small blocking HTTP client over the rustls and aws-lc-rs
//! the workspace already builds. It does not follow the SDK's credential chain: credentials
//! come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
//!
//! Calls block (up to the configured timeout); the keyring makes them only when a KEK is
//! created, rotated or first used after start, never per record.

mod client;
mod config;
mod error;
pub(crate) mod sigv4;

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use zeroize::{Zeroize as _, Zeroizing};

pub use config::{AwsKmsConfig, Credentials, Endpoint};
pub use error::AwsKmsError;

use client::{CallError, KmsClient};

use crate::root_key::{ProviderError, RootKeyProvider, WrapContext, WrappedKey};
use crate::secret::SecretKey;

/// The provider kind recorded with keys this provider wraps.
pub const KIND: &str = "aws-kms";
/// The largest `CiphertextBlob` KMS produces (its documented limit).
pub const MAX_BLOB_LEN: usize = 6144;

/// A root key held in AWS KMS.
pub struct AwsKmsRoot {
    client: KmsClient,
    key_arn: String,
}

impl std::fmt::Debug for AwsKmsRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKmsRoot")
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

/// `KeyMetadata` fields the provider checks.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadata {
    arn: String,
    key_state: Option<String>,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeKeyResponse {
    key_metadata: KeyMetadata,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest<'a> {
    key_id: &'a str,
    plaintext: &'a str,
    encryption_context: BTreeMap<&'static str, String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: String,
    key_id: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest<'a> {
    key_id: &'a str,
    ciphertext_blob: &'a str,
    encryption_context: BTreeMap<&'static str, String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse<'a> {
    #[serde(borrow)]
    plaintext: Cow<'a, str>,
    key_id: Option<String>,
}

impl AwsKmsRoot {
    /// Sets up the provider with credentials from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and checks the key with `DescribeKey`.
    ///
    /// # Errors
    ///
    /// The [`AwsKmsError`] naming what is wrong: configuration, credentials, KMS unreachable,
    /// key unknown, disabled, or not a symmetric encryption key.
    pub fn new(config: &AwsKmsConfig) -> Result<Self, AwsKmsError> {
        Self::with_credentials(config, Credentials::from_env()?)
    }

    /// As [`AwsKmsRoot::new`], with explicit credentials.
    ///
    /// # Errors
    ///
    /// As [`AwsKmsRoot::new`].
    pub fn with_credentials(
        config: &AwsKmsConfig,
        credentials: Credentials,
    ) -> Result<Self, AwsKmsError> {
        let endpoint = config.validate()?;
        let client = KmsClient::new(
            endpoint,
            credentials,
            config.root_certs()?,
            config.timeout(),
        );
        let body = serde_json::json!({ "KeyId": config.key_id }).to_string();
        let response = call(&client, "DescribeKey", body.as_bytes())?;
        let described: DescribeKeyResponse = parse("DescribeKey", &response)?;
        let meta = described.key_metadata;
        let unsuitable = |what: String| AwsKmsError::KeyUnsuitable {
            key: meta.arn.clone(),
            what,
        };
        if let Some(state) = meta.key_state.as_deref().filter(|s| *s != "Enabled") {
            return Err(unsuitable(format!("its state is {state}, not Enabled")));
        }
        if let Some(usage) = meta
            .key_usage
            .as_deref()
            .filter(|u| *u != "ENCRYPT_DECRYPT")
        {
            return Err(unsuitable(format!(
                "its usage is {usage}, not ENCRYPT_DECRYPT"
            )));
        }
        let spec = meta
            .key_spec
            .as_deref()
            .or(meta.customer_master_key_spec.as_deref());
        if let Some(spec) = spec.filter(|s| *s != "SYMMETRIC_DEFAULT") {
            return Err(unsuitable(format!(
                "its key spec is {spec}, not SYMMETRIC_DEFAULT"
            )));
        }
        if !meta.arn.starts_with("arn:") {
            return Err(AwsKmsError::Response {
                operation: "DescribeKey",
                what: "the key metadata has no ARN".to_owned(),
            });
        }
        Ok(Self {
            client,
            key_arn: meta.arn,
        })
    }

    /// Creates a new symmetric encryption key in KMS and returns its ARN (for
    /// `portcullis keys init` and tests; production keys usually come from infrastructure
    /// code, with a key policy). `config` says where and how to reach KMS; its `key_id` is
    /// not used.
    ///
    /// # Errors
    ///
    /// [`AwsKmsError`] if the configuration is malformed or KMS refuses.
    pub fn create_key(
        config: &AwsKmsConfig,
        credentials: Credentials,
        description: &str,
    ) -> Result<String, AwsKmsError> {
        let mut config = config.clone();
        if config.key_id.is_empty() {
            "new".clone_into(&mut config.key_id);
        }
        let client = KmsClient::new(
            config.validate()?,
            credentials,
            config.root_certs()?,
            config.timeout(),
        );
        let body = serde_json::json!({
            "Description": description,
            "KeySpec": "SYMMETRIC_DEFAULT",
            "KeyUsage": "ENCRYPT_DECRYPT",
        })
        .to_string();
        let response = call(&client, "CreateKey", body.as_bytes())?;
        let created: DescribeKeyResponse = parse("CreateKey", &response)?;
        Ok(created.key_metadata.arn)
    }

    /// The ARN of the key (also the root key id recorded with every wrapped KEK).
    #[must_use]
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// A KMS failure during wrap or unwrap, as a provider error.
    fn backend(&self, operation: &str, e: CallError) -> ProviderError {
        match e {
            CallError::Kms { code, message } => ProviderError::Backend(format!(
                "AWS KMS {operation} with key {}: {code}: {message}",
                self.key_arn
            )),
            CallError::Transport(reason) => {
                ProviderError::Backend(format!("AWS KMS {operation}: {reason}"))
            }
        }
    }

    /// Checks that KMS used the configured key.
    fn check_key_id(&self, operation: &str, key_id: Option<&str>) -> Result<(), ProviderError> {
        match key_id {
            Some(id) if id != self.key_arn => Err(ProviderError::Backend(format!(
                "AWS KMS {operation} answered for key {id}, not the configured {}",
                self.key_arn
            ))),
            _ => Ok(()),
        }
    }
}

/// A call with its errors as [`AwsKmsError`].
fn call(
    client: &KmsClient,
    operation: &'static str,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AwsKmsError> {
    client.call(operation, body).map_err(|e| match e {
        CallError::Kms { code, message } => AwsKmsError::Kms {
            operation,
            code,
            message,
        },
        CallError::Transport(reason) => AwsKmsError::Transport { operation, reason },
    })
}

fn parse<'a, T: serde::Deserialize<'a>>(
    operation: &'static str,
    body: &'a [u8],
) -> Result<T, AwsKmsError> {
    serde_json::from_slice(body).map_err(|e| AwsKmsError::Response {
        operation,
        what: e.to_string(),
    })
}

/// The encryption context for `context`.
fn encryption_context(context: WrapContext<'_>) -> BTreeMap<&'static str, String> {
    context.pairs().into_iter().collect()
}

/// Serializes `value` into a buffer large enough never to reallocate (so no unzeroized
/// copy of a plaintext is left behind), zeroized on drop.
fn json_body(
    value: &impl serde::Serialize,
    capacity: usize,
) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *body, value)
        .map_err(|e| ProviderError::Backend(format!("AWS KMS request: {e}")))?;
    Ok(body)
}

impl RootKeyProvider for AwsKmsRoot {
    fn kind(&self) -> &str {
        KIND
    }

    fn root_key_id(&self) -> &str {
        &self.key_arn
    }

    fn wrap(&self, kek: &SecretKey, context: WrapContext<'_>) -> Result<WrappedKey, ProviderError> {
        let plaintext = Zeroizing::new(BASE64.encode(kek.expose()));
        let request = EncryptRequest {
            key_id: &self.key_arn,
            plaintext: &plaintext,
            encryption_context: encryption_context(context),
        };
        let body = json_body(
            &request,
            1024 + self.key_arn.len() + context.topic.len() * 2,
        )?;
        let response = self
            .client
            .call("Encrypt", &body)
            .map_err(|e| self.backend("Encrypt", e))?;
        let parsed: EncryptResponse = serde_json::from_slice(&response).map_err(|e| {
            ProviderError::Backend(format!("AWS KMS Encrypt: unexpected response: {e}"))
        })?;
        self.check_key_id("Encrypt", parsed.key_id.as_deref())?;
        let blob = BASE64
            .decode(parsed.ciphertext_blob.as_bytes())
            .map_err(|_| {
                ProviderError::Backend("AWS KMS Encrypt: CiphertextBlob is not base64".to_owned())
            })?;
        if blob.is_empty() || blob.len() > MAX_BLOB_LEN {
            return Err(ProviderError::Backend(format!(
                "AWS KMS Encrypt: CiphertextBlob of {} bytes (expected 1 to {MAX_BLOB_LEN})",
                blob.len()
            )));
        }
        Ok(WrappedKey {
            provider: KIND.to_owned(),
            root_key_id: self.key_arn.clone(),
            blob,
        })
    }

    fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: WrapContext<'_>,
    ) -> Result<SecretKey, ProviderError> {
        wrapped.check_origin(KIND, &self.key_arn)?;
        if wrapped.blob.is_empty() || wrapped.blob.len() > MAX_BLOB_LEN {
            return Err(ProviderError::Malformed(
                "AWS KMS ciphertext blob has an impossible length",
            ));
        }
        let blob = BASE64.encode(&wrapped.blob);
        let request = DecryptRequest {
            key_id: &self.key_arn,
            ciphertext_blob: &blob,
            encryption_context: encryption_context(context),
        };
        let body = json_body(
            &request,
            1024 + blob.len() + self.key_arn.len() + context.topic.len() * 2,
        )?;
        let response = match self.client.call("Decrypt", &body) {
            Ok(response) => response,
            Err(CallError::Kms { code, .. })
                if code == "InvalidCiphertextException" || code == "IncorrectKeyException" =>
            {
                return Err(ProviderError::Unwrap {
                    topic: context.topic.to_owned(),
                    kek_version: context.kek_version,
                })
            }
            Err(e) => return Err(self.backend("Decrypt", e)),
        };
        let parsed: DecryptResponse<'_> = serde_json::from_slice(&response).map_err(|_| {
            ProviderError::Backend("AWS KMS Decrypt: unexpected response".to_owned())
        })?;
        self.check_key_id("Decrypt", parsed.key_id.as_deref())?;
        let mut plaintext = parsed.plaintext;
        let key = BASE64
            .decode(plaintext.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| {
                ProviderError::Backend("AWS KMS Decrypt: Plaintext is not base64".to_owned())
            })
            .and_then(|bytes| {
                SecretKey::from_slice(&bytes).map_err(|_| {
                    ProviderError::Malformed("AWS KMS Decrypt returned a key that is not 32 bytes")
                })
            });
        if let Cow::Owned(text) = &mut plaintext {
            text.zeroize();
        }
        key
    }
}
