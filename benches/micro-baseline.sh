#!/usr/bin/env bash
# Runs today's criterion benches against an older commit's library ("before"):
#
#   benches/micro-baseline.sh 239e202      # then `cargo bench` for "after"
#
# The commit's tree is unpacked under target/bench-baseline/<rev>/src, the
# benches/*.rs of the working tree and their [[bench]] sections are added to
# it, and `cargo bench` runs there (its own target dir, reused next time).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rev=$(git rev-parse "${1:?usage: benches/micro-baseline.sh REV}")
src=target/bench-baseline/${rev:0:12}/src
rm -rf "$src" && mkdir -p "$src"
git archive "$rev" | tar -x -C "$src"
cp benches/*.rs "$src/benches/" 2>/dev/null || { mkdir -p "$src/benches" && cp benches/*.rs "$src/benches/"; }
if ! grep -q '^criterion' "$src/Cargo.toml"; then
  sed -i 's/^\[dev-dependencies\]$/[dev-dependencies]\ncriterion = { version = "0.5", default-features = false, features = ["cargo_bench_support"] }/' "$src/Cargo.toml"
  printf '\n[[bench]]\nname = "link_verify"\nharness = false\n\n[[bench]]\nname = "upload_verify"\nharness = false\n' >> "$src/Cargo.toml"
fi
cp Cargo.lock "$src/Cargo.lock"
CARGO_TARGET_DIR=$root/target/bench-baseline/target cargo bench --manifest-path "$src/Cargo.toml" "${@:2}"
