//! Why an AWS KMS root key could not be set up or created.
//!
//! No variant carries credentials, request signatures or key material: KMS error messages are
//! passed on (bounded in length, control characters removed) because they name the key and
//! the permission that is missing, which is what an operator needs. Failures while wrapping
//! and unwrapping are reported through [`crate::ProviderError`].

/// Why the AWS KMS root key could not be set up or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsKmsError {
    /// A configuration field is missing or malformed.
    #[error("aws-kms root key configuration: {0}")]
    Config(String),
    /// The credentials are missing or malformed.
    #[error("aws-kms credentials: {0} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN for temporary credentials)")]
    Credentials(String),
    /// KMS answered with an error.
    #[error("AWS KMS {operation} failed: {code}: {message}")]
    Kms {
        /// The KMS operation (`DescribeKey`).
        operation: &'static str,
        /// The KMS error code (`NotFoundException`, `AccessDeniedException`).
        code: String,
        /// KMS's message.
        message: String,
    },
    /// KMS could not be reached or did not answer in time.
    #[error("AWS KMS {operation}: {reason}")]
    Transport {
        /// The KMS operation.
        operation: &'static str,
        /// What went wrong (connection refused, timeout, TLS).
        reason: String,
    },
    /// KMS answered something that is not a valid response.
    #[error("AWS KMS {operation}: unexpected response: {what}")]
    Response {
        /// The KMS operation.
        operation: &'static str,
        /// What is wrong with it.
        what: String,
    },
    /// The key exists but cannot be a root key.
    #[error("AWS KMS key {key} cannot be a root key: {what}")]
    KeyUnsuitable {
        /// The key ARN or id.
        key: String,
        /// What is wrong with it (disabled, pending deletion, not symmetric).
        what: String,
    },
}
