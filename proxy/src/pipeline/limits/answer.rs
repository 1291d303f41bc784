//! The Kafka answer to a request over the limits, for the apis whose response can say so.
//!
//! Only a response with a top-level error code can refuse a request without listing every
//! item it named; those get `POLICY_VIOLATION` (the request breaks a limit the operator
//! configured). Every other api is answered by closing the connection (see the module docs).

use kafka_protocol::messages::{
    ApiKey, FetchResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse,
    ListTransactionsResponse, OffsetFetchResponse, ResponseKind, SyncGroupResponse,
};
use kafka_protocol::ResponseError;

/// The answer to an over-limit request of `api` at `version`, or `None` when the connection
/// must close instead.
pub fn refusal(api: ApiKey, version: i16) -> Option<ResponseKind> {
    let code = ResponseError::PolicyViolation.code();
    Some(match api {
        ApiKey::Fetch if version >= 7 => {
            ResponseKind::Fetch(FetchResponse::default().with_error_code(code))
        }
        ApiKey::OffsetFetch if (2..=7).contains(&version) => {
            ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(code))
        }
        ApiKey::ListTransactions => ResponseKind::ListTransactions(
            ListTransactionsResponse::default().with_error_code(code),
        ),
        ApiKey::ListGroups => {
            ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(code))
        }
        ApiKey::JoinGroup => {
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(code))
        }
        ApiKey::SyncGroup => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        ApiKey::LeaveGroup if version >= 3 => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        _ => return None,
    })
}

/// Whether an over-limit request of `api` at `version` is answered (rather than closed).
#[cfg(test)]
pub fn answered(api: ApiKey, version: i16) -> bool {
    refusal(api, version).is_some()
}
