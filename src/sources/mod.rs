//! Clients for the upstream systems collectors read.
pub mod distro_info;
pub mod http;
pub mod launchpad;
