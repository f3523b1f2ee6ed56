//! The `assetgate` binary: everything lives in the library; see `cli`.
#![forbid(unsafe_code)]

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    assetgate::cli::main()
}
