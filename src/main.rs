/// The program's allocator: the system's, which a jq filter's process
/// limits (see `ubuntu_metrics::custom::jq::Allocator`).
#[global_allocator]
static ALLOCATOR: ubuntu_metrics::custom::jq::Allocator = ubuntu_metrics::custom::jq::Allocator;

fn main() {
    ubuntu_metrics::cli::main()
}
