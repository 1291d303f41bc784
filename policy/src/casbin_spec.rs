//! casbin, kept as the specification of Portcullis's decisions: every policy generation
//! is also loaded into a casbin enforcer with the shipped model, which validates the model
//! against Portcullis's request shape at load time. Decisions are made by the rule index
//! (`rule_index.rs`); casbin answers `explain`'s cross-check and the property test that
//! proves the index decides exactly as the model does.

use std::collections::HashSet;
use std::path::Path;

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};

use crate::error::PolicyError;
use crate::resource::{Operation, ResourceType};
use crate::rules::{self, Rule};

/// The casbin request for one check: subjects, resource type, name, and the operations
/// whose allow (resp. deny) rules apply.
type CasbinRequest = (
    Vec<String>,
    &'static str,
    String,
    Vec<&'static str>,
    Vec<&'static str>,
);

/// Builds a casbin enforcer from the model text and rules. casbin's constructors are async
/// but do no I/O with a model string and a string adapter; they run on a private
/// current-thread runtime on a scoped thread, so this works inside and outside tokio.
pub(crate) fn build_enforcer(
    model_path: &Path,
    model: &str,
    rules: &[Rule],
) -> Result<Enforcer, PolicyError> {
    let model_err = |message: String| PolicyError::Model {
        file: model_path.to_path_buf(),
        message,
    };
    let mut seen = HashSet::new();
    let mut text = String::new();
    for r in rules {
        let line = r.casbin_fields().join(", ");
        if seen.insert(line.clone()) {
            text.push_str("p, ");
            text.push_str(&line);
            text.push('\n');
        }
    }
    let model = model.to_string();
    let built = std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| format!("cannot start a runtime to build the enforcer: {e}"))?;
            rt.block_on(async move {
                let m = DefaultModel::from_str(&model)
                    .await
                    .map_err(|e| format!("invalid casbin model: {e}"))?;
                Enforcer::new(m, StringAdapter::new(text))
                    .await
                    .map_err(|e| format!("casbin rejected the model or policy: {e}"))
            })
        })
        .join()
        .unwrap_or_else(|_| Err("casbin panicked while loading".to_string()))
    });
    let enforcer = built.map_err(model_err)?;
    // The model must fit Portcullis's request shape; a probe enforce finds out now rather
    // than on the first request.
    let probe: CasbinRequest = (
        vec!["User:probe".to_string()],
        "topic",
        "probe".to_string(),
        vec!["Read"],
        vec!["Read"],
    );
    enforcer.enforce(probe).map_err(|e| {
        model_err(format!(
            "the model does not fit `r = subs, rtype, obj, allow_ops, deny_ops` / `p = sub, rtype, obj, act, eft`: {e}"
        ))
    })?;
    Ok(enforcer)
}

/// casbin's verdict on a request, or `None` for a name casbin must never see (its
/// `keyMatch` slices names by byte and panics inside a multibyte character); those names
/// are decided by the rule index alone.
pub(crate) fn casbin_allows(
    enforcer: &Enforcer,
    subjects: &[String],
    resource: ResourceType,
    name: &str,
    op: Operation,
) -> Option<Result<bool, String>> {
    if !rules::valid_resource_name(resource, name) {
        return None;
    }
    let request: CasbinRequest = (
        subjects.to_vec(),
        resource.as_str(),
        name.to_string(),
        op.allowed_by().iter().map(|o| o.as_str()).collect(),
        op.denied_by().iter().map(|o| o.as_str()).collect(),
    );
    Some(enforcer.enforce(request).map_err(|e| e.to_string()))
}
