//! A policy directory as read from disk in one pass (model and every `*.csv`), with a
//! fingerprint of its bytes so the watcher reloads only on change, and the parse of it
//! that collects every error.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::error::PolicyError;
use crate::rules::{self, ParsedFile};

/// The contents of a policy directory as read from disk, with a fingerprint of its bytes.
pub(crate) struct DirSnapshot {
    pub model_path: PathBuf,
    pub model: Result<Vec<u8>, PolicyError>,
    pub files: Vec<(PathBuf, Result<Vec<u8>, PolicyError>)>,
}

impl DirSnapshot {
    /// Reads the model and every `*.csv` file.
    pub fn read(dir: &Path) -> Result<DirSnapshot, PolicyError> {
        let (model_path, paths) = rules::policy_files(dir)?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| PolicyError::Io {
                path: p.to_path_buf(),
                message: e.to_string(),
            })
        };
        let model = read(&model_path);
        let files = paths
            .into_iter()
            .map(|p| {
                let bytes = read(&p);
                (p, bytes)
            })
            .collect();
        Ok(DirSnapshot {
            model_path,
            model,
            files,
        })
    }

    /// A hash over every file name and content: any edit, addition, removal or
    /// replacement changes it.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.model_path.hash(&mut h);
        format!("{:?}", self.model.as_ref().map(|b| b.len())).hash(&mut h);
        if let Ok(b) = &self.model {
            b.hash(&mut h);
        }
        for (p, bytes) in &self.files {
            p.hash(&mut h);
            match bytes {
                Ok(b) => {
                    0u8.hash(&mut h);
                    b.hash(&mut h);
                }
                Err(e) => {
                    1u8.hash(&mut h);
                    e.to_string().hash(&mut h);
                }
            }
        }
        h.finish()
    }

    /// Parses everything, collecting every error.
    pub fn parse(&self, dir: &Path) -> Result<(String, Vec<ParsedFile>), Vec<PolicyError>> {
        let mut errors = Vec::new();
        let model = match &self.model {
            Ok(bytes) => match String::from_utf8(bytes.clone()) {
                Ok(s) => Some(s),
                Err(_) => {
                    errors.push(PolicyError::Model {
                        file: self.model_path.clone(),
                        message: "not valid UTF-8".to_string(),
                    });
                    None
                }
            },
            Err(e) => {
                errors.push(PolicyError::Model {
                    file: self.model_path.clone(),
                    message: format!("cannot read the casbin model: {e}"),
                });
                None
            }
        };
        if self.files.is_empty() {
            errors.push(PolicyError::NoPolicies {
                dir: dir.to_path_buf(),
            });
        }
        let mut parsed = Vec::new();
        for (path, bytes) in &self.files {
            match bytes {
                Ok(b) => match rules::parse_file(path, b) {
                    Ok(p) => parsed.push(p),
                    Err(e) => errors.extend(e),
                },
                Err(e) => errors.push(e.clone()),
            }
        }
        match model {
            Some(m) if errors.is_empty() => Ok((m, parsed)),
            _ => Err(errors),
        }
    }
}
