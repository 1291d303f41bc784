//! OAuth 2.0 client-credentials tokens for upstream OAUTHBEARER. (stub: being written)
