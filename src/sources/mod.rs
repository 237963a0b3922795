//! Clients for the upstream systems collectors read. Sources know nothing
//! of collectors or of the configuration file: they have their own error
//! ([`SourceError`]) and their own settings ([`http::HttpConfig`]).
pub mod cache;
pub mod distro_info;
pub mod error;
pub mod http;
pub mod launchpad;
pub mod rsync;

pub use cache::RunCache;
pub use error::SourceError;
