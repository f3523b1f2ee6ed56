#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the fuzz/ targets, on the stable toolchain.
#
#   scripts/fuzz.sh                         # every target, 10 s each (what CI runs)
#   scripts/fuzz.sh 600 hook_json           # a longer run of one target
#   FUZZ_RELEASE=1 scripts/fuzz.sh 600      # optimised build (+ debug assertions)
#
# cargo-fuzz 0.13.2 goes to $ASSETGATE_PEERS/bin (default .peers/), built once
# in the dev profile (it only drives cargo; about 1 min). `-s none`: no
# sanitizer, so stable rustc accepts the flags (the crate forbids unsafe code;
# see fuzz/README.md for ASan). The default build is the dev profile (debug
# assertions and overflow checks on, and it compiles as fast as the plain
# build it replaces); FUZZ_RELEASE=1 builds the optimised one for campaigns.
#
# Seeds: the hook fixtures (tests/fixtures/tusd-v2, rustus-v1) with control
# bytes in front (see fuzz/fuzz_targets/hook_json.rs), the tusd and rustus
# .info fixtures for info_parse. The corpora grow in fuzz/corpus/<target>/
# (not committed). A crash, a timeout (10 s per input) or an OOM fails the
# run; the input lands in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peers=${ASSETGATE_PEERS:-$root/.peers}
seconds=${1:-10}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(uri_args link_verify hook_json info_parse)
fi

cargo_fuzz_version=0.13.2
if [ "$("$peers/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  printf '\n== installing cargo-fuzz %s into %s (once)\n' "$cargo_fuzz_version" "$peers"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --debug --root "$peers" -q
fi
export PATH="$peers/bin:$PATH"

if [ "${FUZZ_RELEASE:-0}" = 1 ]; then
  profile=(--debug-assertions) build=release
else
  profile=(--dev) build=dev
fi
CARGO_TERM_QUIET=true cargo fuzz build -s none "${profile[@]}"

# seed_hook NAME FILE HEADER LOOKUP CONFIG: FILE with the three control bytes
# (octal escapes for printf) in front.
seed_hook() {
  local dir=fuzz/corpus/hook_json
  { printf "\\$3\\$4\\$5"; cat "$2"; } >"$dir/seed-$1"
}
seed() {
  mkdir -p fuzz/corpus/hook_json fuzz/corpus/info_parse
  local f name
  for f in tests/fixtures/tusd-v2/*.json; do
    name=v2-$(basename "$f" .json)
    seed_hook "$name" "$f" 000 000 000         # no header, free, gate A as sent
    seed_hook "$name-b" "$f" 000 024 003       # good parts, PNG head, gate B re-signed
  done
  for f in tests/fixtures/rustus-v1/*.json; do
    name=v1-$(basename "$f" .json)
    case $name in
      v1-pre-create*) seed_hook "$name" "$f" 001 000 000 ;;   # Hook-Name: pre-create
      v1-post-finish*) seed_hook "$name" "$f" 005 000 000 ;;  # Hook-Name: post-finish
    esac
  done
  for f in tests/fixtures/tusd/*.info tests/fixtures/rustus/*/data/*.info; do
    cp "$f" "fuzz/corpus/info_parse/seed-$(basename "$f")"
  done
}
seed

dict() {
  case $1 in
    uri_args | link_verify) echo fuzz/nginx_uri.dict ;;
    *) echo fuzz/hook_json.dict ;;
  esac
}

for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" fuzz/target/logs
  log="fuzz/target/logs/$t-$build.log"
  start=$(date +%s)
  if ! cargo fuzz run -s none "${profile[@]}" "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      -dict="$(dict "$t")" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $t FAILED (log: $log; input: fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -oE 'DONE +cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | sed 's/DONE *//' || true)
  echo "fuzz $t: ${execs:-?} execs, ${speed:-?}/s, $cov, $(($(date +%s) - start)) s, no crash"
done
