// No product function over 100 lines (clippy.toml sets the limit); the
// inline tests are exempt.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
/// The program's allocator: the system's, which a jq filter's process
/// limits (see `ubuntu_metrics::custom::jq::Allocator`).
#[global_allocator]
static ALLOCATOR: ubuntu_metrics::custom::jq::Allocator = ubuntu_metrics::custom::jq::Allocator;

fn main() {
    ubuntu_metrics::cli::main()
}
