//! The `assetgate` binary: everything lives in the library; see `cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    assetgate::cli::main()
}
