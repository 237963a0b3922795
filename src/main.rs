fn main() {
    std::process::exit(ubuntu_metrics::cli::main_with_args(
        std::env::args_os().collect(),
    ));
}
