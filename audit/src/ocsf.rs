//! A best-effort OCSF (Open Cybersecurity Schema Framework) rendering of audit events, for
//! SIEMs that ingest OCSF. The original event travels along in `unmapped`, so nothing is lost;
//! verification always uses the stored entries, never this rendering.

use serde_json::{json, Value};

use crate::event::{Category, Event, Outcome};

/// Renders one event as an OCSF 1.x object.
pub fn to_ocsf(e: &Event) -> Value {
    // Authentication (3002) and Account Change-like IAM classes for identity events; API
    // Activity (6003) for everything the proxy decides about requests.
    let (category_uid, class_uid, class_name) = match e.category {
        Category::Authn => (3, 3002, "Authentication"),
        Category::Key | Category::Config | Category::Admin => (6, 6003, "API Activity"),
        Category::Authz | Category::Connection | Category::AuditSystem => (6, 6003, "API Activity"),
    };
    let status_id = match e.outcome {
        Outcome::Allow | Outcome::Success => 1,
        Outcome::Deny | Outcome::Failure | Outcome::Error => 2,
    };
    let time_ms =
        time::OffsetDateTime::parse(&e.timestamp, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or(0);
    json!({
        "category_uid": category_uid,
        "class_uid": class_uid,
        "class_name": class_name,
        "activity_name": e.action,
        "status_id": status_id,
        "status": if status_id == 1 { "Success" } else { "Failure" },
        "status_detail": e.reason,
        "time": time_ms,
        "severity_id": if status_id == 1 { 1 } else { 3 },
        "metadata": {
            "version": "1.1.0",
            "product": {"name": "Portcullis", "vendor_name": "Portcullis"},
            "uid": e.event_id,
            "sequence": e.seq,
        },
        "actor": {"user": {"name": e.principal, "groups": e.roles.iter().map(|r| json!({"name": r})).collect::<Vec<_>>()}},
        "auth_protocol": e.mechanism,
        "src_endpoint": {"ip": e.client_addr.as_deref().map(strip_port), "svc_name": e.client_id},
        "resources": e.resource.as_ref().map(|r| vec![json!({"type": r.resource_type, "name": r.name})]),
        "unmapped": e,
    })
}

fn strip_port(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            host.trim_start_matches('[').trim_end_matches(']')
        }
        _ => addr,
    }
}
