//! Authorization for Portcullis: which Kafka resources and operations each request needs
//! (the api table), and whether a principal may perform them (the policy engine).
//!
//! The policy engine loads a casbin model and CSV policy files from a directory
//! (see `docs/authorization.md`), decides requests with deny-wins and Kafka's
//! implications through an index of the rules (casbin, loaded alongside, is the
//! specification the index is property-tested against), caches decisions per policy
//! generation, and swaps the whole compiled policy atomically on reload.

pub mod api_acl;
mod authorizer;
mod casbin_spec;
mod cli;
mod compiled;
mod dir_snapshot;
mod error;
mod prefix_set;
pub mod resource;
mod role_assignments;
mod rule_index;
pub mod rules;

pub use authorizer::{
    Authorizer, Degraded, Explanation, PolicyConfig, ReloadEvent, ReloadFailure, DENY_ALL_RULE,
};
pub use cli::{check_dir, parse_resource, run, PolicyCommand, PolicySummary};
pub use compiled::{Decision, CACHE_CAPACITY};
pub use error::PolicyError;
pub use resource::{Operation, ResourceType};

#[cfg(test)]
mod index_equivalence_tests;
#[cfg(test)]
mod tests;
