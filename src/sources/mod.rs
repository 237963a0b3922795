//! Clients for the upstream systems collectors read. Sources know nothing
//! of collectors or of the configuration file: they have their own error
//! ([`SourceError`]) and their own settings ([`http::HttpConfig`]).
pub mod cache;
pub mod distro_info;
pub mod error;
pub mod http;
pub mod launchpad;
pub mod reports;
pub mod rsync;
pub mod tape;

pub use cache::RunCache;
pub use error::SourceError;

#[cfg(test)]
mod tests {
    /// The flow is one-way (sources -> collector -> runner -> sink): no
    /// source file names the collector or configuration modules outside
    /// its tests.
    #[test]
    fn sources_import_neither_collector_nor_config() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sources");
        let mut files = 0;
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        while let Some(path) = paths.pop() {
            if path.is_dir() {
                paths.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for module in ["crate::collector", "crate::config"] {
                assert!(
                    !code.contains(module),
                    "{} names {module}: sources must not depend on it",
                    path.display()
                );
            }
        }
        assert!(files >= 5, "{files} files in {}", dir.display());
    }
}
