#!/usr/bin/env bash
# The S3-compatible engines the S3 tests run (issue 21), built from their Go
# modules and cached in $ASSETGATE_PEERS/bin (default .peers/bin) under names
# that carry their versions, like tusd in scripts/test.sh:
#   weed-<SEAWEEDFS_VERSION>   SeaweedFS, through the wrapper module
#                              tests/peers/seaweedfs (go install refuses it:
#                              its go.mod has replace lines); 4-8 min cold
#   versitygw-<VERSITYGW_VERSION>  versitygw (go install); ~1.5 min cold
# Each is built into a temporary directory and moved into place only when
# complete, so a half-finished build is never taken for a cached one; a
# binary already in place is kept.
#
#   scripts/s3-peers.sh                    # install both (standalone)
#   . scripts/s3-peers.sh; s3_peers_install   # from scripts/test.sh
#
# scripts/test.sh sources this file and calls s3_peers_install on every run
# (a no-op once both binaries are in place).
# The versions are also in tests/common/s3.rs (its install commands).

SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
VERSITYGW_VERSION=v1.8.0

_s3_peers_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

_s3_need_go() { # _s3_need_go WHAT
  if ! command -v go >/dev/null 2>&1; then
    echo "need Go (>= 1.26.6) to build $1: https://go.dev/dl/" >&2
    return 1
  fi
}

seaweedfs_install() { # seaweedfs_install   (version pinned by tests/peers/seaweedfs/go.mod)
  local peers=${ASSETGATE_PEERS:-$_s3_peers_root/.peers} version=$SEAWEEDFS_VERSION
  local bin="$peers/bin/weed-$version" wrapper="$_s3_peers_root/tests/peers/seaweedfs" tmp
  # The pseudo-version's commit hash must be the one the wrapper pins.
  if ! grep -q "github.com/seaweedfs/seaweedfs $version" "$wrapper/go.mod"; then
    echo "scripts/s3-peers.sh pins SeaweedFS $version but $wrapper/go.mod requires another" >&2
    return 1
  fi
  if [ -x "$bin" ]; then
    return 0
  fi
  _s3_need_go "SeaweedFS $version" || return 1
  printf '\n== %s\n' "building SeaweedFS $version (4-8 minutes, once)"
  mkdir -p "$peers/bin"
  rm -rf "$peers/bin/.weed-build-$version".*   # left by an interrupted build
  tmp=$(mktemp -d "$peers/bin/.weed-build-$version.XXXXXX")
  (cd "$wrapper" && CGO_ENABLED=0 go build -o "$tmp/weed" github.com/seaweedfs/seaweedfs/weed) || return 1
  "$tmp/weed" version >/dev/null || return 1
  mv -f "$tmp/weed" "$bin"
  rm -rf "$tmp"
}

versitygw_install() { # versitygw_install
  local peers=${ASSETGATE_PEERS:-$_s3_peers_root/.peers} version=$VERSITYGW_VERSION
  local bin="$peers/bin/versitygw-$version" tmp
  if [ -x "$bin" ]; then
    return 0
  fi
  _s3_need_go "versitygw $version" || return 1
  printf '\n== %s\n' "building versitygw $version (a minute or two, once)"
  mkdir -p "$peers/bin"
  rm -rf "$peers/bin/.versitygw-build-$version".*
  tmp=$(mktemp -d "$peers/bin/.versitygw-build-$version.XXXXXX")
  GOBIN=$tmp CGO_ENABLED=0 go install "github.com/versity/versitygw/cmd/versitygw@$version" || return 1
  "$tmp/versitygw" --version >/dev/null || return 1
  mv -f "$tmp/versitygw" "$bin"
  rm -rf "$tmp"
}

s3_peers_install() {
  seaweedfs_install && versitygw_install
}

# Run directly: install both.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  s3_peers_install
fi
