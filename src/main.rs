fn main() {
    ubuntu_metrics::cli::main()
}
