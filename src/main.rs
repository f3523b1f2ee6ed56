//! The `assetgate` binary: everything lives in the library; see `cli`.
#![forbid(unsafe_code)]

/// jemalloc with its background thread: after a flood of connections it gives
/// the freed memory back to the kernel within its 10 s decay; glibc's malloc
/// kept it (docs/operations.md, Operations).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    assetgate::cli::main()
}
