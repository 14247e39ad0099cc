fn main() {
    std::process::exit(kots_bundle::cli::main());
}
