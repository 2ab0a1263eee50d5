//! A fixed table of named exports: the simplest [`ExportProvider`].

use std::sync::Arc;

use crate::error::ExportError;
use crate::export::{BlockExport, ExportInfo, ExportProvider};

/// Named exports in the order they were added. The empty name opens the default export,
/// if one was chosen.
#[derive(Default)]
pub struct ExportMap {
    exports: Vec<(ExportInfo, Arc<dyn BlockExport>)>,
    default_name: Option<String>,
}

impl ExportMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an export.
    pub fn with_export(
        mut self,
        name: &str,
        description: &str,
        export: Arc<dyn BlockExport>,
    ) -> Self {
        self.exports.retain(|(info, _)| info.name != name);
        let info = ExportInfo {
            name: name.to_owned(),
            description: description.to_owned(),
        };
        self.exports.push((info, export));
        self
    }

    /// Makes `name` the export that the empty name opens.
    pub fn with_default(mut self, name: &str) -> Self {
        self.default_name = Some(name.to_owned());
        self
    }
}

impl ExportProvider for ExportMap {
    fn list(&self) -> Vec<ExportInfo> {
        self.exports.iter().map(|(info, _)| info.clone()).collect()
    }

    fn open(&self, name: &str) -> Result<Arc<dyn BlockExport>, ExportError> {
        let wanted = match (name, &self.default_name) {
            ("", Some(default)) => default.as_str(),
            _ => name,
        };
        self.exports
            .iter()
            .find(|(info, _)| info.name == wanted)
            .map(|(_, export)| Arc::clone(export))
            .ok_or_else(|| ExportError::NotFound {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_export::MemoryExport;

    #[test]
    fn opens_by_name_and_default() {
        let map = ExportMap::new()
            .with_export("a", "first", Arc::new(MemoryExport::new(10)))
            .with_export("b", "second", Arc::new(MemoryExport::new(20)))
            .with_default("b");
        assert_eq!(map.open("a").unwrap().size(), 10);
        assert_eq!(map.open("").unwrap().size(), 20);
        assert!(matches!(map.open("c"), Err(ExportError::NotFound { .. })));
        let names: Vec<_> = map.list().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn empty_name_without_default_is_unknown() {
        let map = ExportMap::new().with_export("a", "", Arc::new(MemoryExport::new(1)));
        assert!(matches!(map.open(""), Err(ExportError::NotFound { .. })));
    }
}
