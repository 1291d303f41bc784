//! Authorization for Portcullis: which Kafka resources and operations each request needs
//! (the api table), and whether a principal may perform them (the policy engine).

pub mod api_acl;
pub mod resource;

pub use resource::{Operation, ResourceType};
