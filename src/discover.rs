//! TEMPORARY stub with the agreed API; replaced by the discover branch.
#![allow(unused_variables, dead_code)]
use std::collections::BTreeMap;
use std::path::Path;

use crate::reference::Reference;
use crate::upstream::ManifestFile;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub file: String,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub at: Location,
    pub why: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.at.file, self.at.path, self.why)
    }
}

#[derive(Debug, Default, Clone)]
pub struct Discovery {
    pub images: BTreeMap<Reference, Vec<Location>>,
    pub problems: Vec<Problem>,
}

impl Discovery {
    pub fn add(&mut self, r: Reference, at: Location) {
        self.images.entry(r).or_default().push(at);
    }
    pub fn exclude(&mut self, r: &Reference) -> bool {
        self.images.remove(r).is_some()
    }
    pub fn references(&self) -> Vec<Reference> {
        self.images.keys().cloned().collect()
    }
}

pub fn discover(files: &[ManifestFile]) -> Discovery {
    todo!()
}

pub fn read_images_file(path: &Path) -> anyhow::Result<Vec<Reference>> {
    todo!()
}
