//! TEMPORARY stand-in for the policy engine (being built on branch policy-engine).
#![allow(missing_docs, dead_code)]
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{Operation, ResourceType};

pub struct PolicyConfig {
    pub dir: PathBuf,
    pub super_users: Vec<String>,
    pub reload_interval: Duration,
}
#[derive(Clone)]
pub struct Authorizer;
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Arc<str>,
}
#[derive(Debug, Clone)]
pub struct ReloadEvent {
    pub accepted: bool,
    pub generation: u64,
    pub rules: usize,
    pub files: Vec<PathBuf>,
    pub error: Option<PolicyError>,
}
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);
impl Authorizer {
    pub fn load(_c: &PolicyConfig) -> Result<Authorizer, PolicyError> {
        Ok(Authorizer)
    }
    pub fn authorize(
        &self,
        _p: &str,
        _r: &[String],
        _t: ResourceType,
        _n: &str,
        _o: Operation,
    ) -> Decision {
        Decision {
            allowed: true,
            rule: "stub".into(),
        }
    }
    pub fn generation(&self) -> u64 {
        1
    }
    pub fn reload(&self) -> ReloadEvent {
        ReloadEvent {
            accepted: true,
            generation: 1,
            rules: 0,
            files: vec![],
            error: None,
        }
    }
    pub fn spawn_watcher(
        &self,
        _f: impl Fn(ReloadEvent) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {})
    }
}
pub fn check_dir(_d: &Path) -> Result<(), Vec<PolicyError>> {
    Ok(())
}
