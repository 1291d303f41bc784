//! What the proxy knows about the upstream cluster: its brokers (and the proxy port each
//! is given), the api versions every broker supports, the topic ids, and their discovery.

pub mod api_versions;
pub mod broker_map;
mod discovery;
pub mod partition_client;
pub mod registry_topic;
pub mod topic_ids;

pub use discovery::{run_discovery, ClusterView};
