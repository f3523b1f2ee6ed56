#!/usr/bin/env bash
# The whole benchmark suite, one command (about 8 minutes on 2 cores):
#
#   benches/run.sh                          # assetgate as checked out
#   benches/run.sh --baseline-rev 239e202   # ... and, interleaved, a baseline
#                                           # built from that commit ("before")
#
# Builds assetgate in release, sets up the Python venv for the driver and the
# reference FastAPI hook (benches/requirements.txt -> .peers/bench-venv) and the
# granite-assets peers venv (tests/peers/requirements.txt -> .peers/venv), then
# runs benches/run.py, which prints the table and writes benches/results/
# (results.json, table.md, chart.png). Other arguments go to run.py
# (--rounds, --duration, ...; see `benches/run.sh --help`). Needs nginx and wrk
# (Debian packages, installed here if missing) and Python 3.12.
#
# Micro-benchmarks are separate: `cargo bench` (benches/link_verify.rs,
# benches/upload_verify.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peers=${ASSETGATE_PEERS:-$root/.peers}

say() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

python312() {
  if command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -qx '3.12.1'; then
    PYENV_VERSION=3.12.1 python3 "$@"
  elif command -v python3.12 >/dev/null 2>&1; then
    python3.12 "$@"
  else
    echo "need Python 3.12 (pyenv 3.12.1 or python3.12)" >&2
    exit 1
  fi
}

venv() { # DIR REQUIREMENTS
  local dir=$1 req=$2 want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    say "creating $dir ($req)"
    rm -rf "$dir"
    python312 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$dir/.requirements.sha256"
  fi
}
venv "$peers/bench-venv" benches/requirements.txt
venv "$peers/venv" tests/peers/requirements.txt

# oha: the constant-rate load generator for the latency at half load (wrk2,
# which would do it, is not packaged in Debian).
OHA_VERSION=1.16.0
if ! "$peers/bin/oha" --version 2>/dev/null | grep -qx "oha $OHA_VERSION"; then
  say "installing oha $OHA_VERSION (cargo install, a few minutes) into $peers/bin"
  cargo install -q --locked oha --version "$OHA_VERSION" --root "$peers"
fi

say "building assetgate (release)"
cargo build -q --release --bin assetgate --example hyper_floor

args=()
while [ $# -gt 0 ]; do
  case $1 in
    --baseline-rev)
      rev=$(git rev-parse "$2")
      dir=target/bench-baseline/${rev:0:12}
      if [ ! -x "$dir/assetgate" ]; then
        say "building the baseline $rev (release) into $dir"
        rm -rf "$dir/src" && mkdir -p "$dir/src"
        git archive "$rev" | tar -x -C "$dir/src"
        CARGO_TARGET_DIR=$root/target/bench-baseline/target \
          cargo build -q --release --bin assetgate --manifest-path "$dir/src/Cargo.toml"
        cp target/bench-baseline/target/release/assetgate "$dir/assetgate"
      fi
      args+=(--baseline "$dir/assetgate" --baseline-label "$(git rev-parse --short "$rev")")
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done

exec "$peers/bench-venv/bin/python" benches/run.py --bin target/release/assetgate --oha "$peers/bin/oha" \
  --peers-python "$peers/venv/bin/python" "${args[@]}"
