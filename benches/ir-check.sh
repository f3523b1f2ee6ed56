#!/usr/bin/env bash
# The instruction-count regression check of the pure decisions (CI runs it
# from scripts/test.sh; about a minute once built):
#
#   benches/ir-check.sh            # fails (exit 3) if a decision counts > +10 %
#                                  # over benches/ir-baseline.txt
#   benches/ir-check.sh --update   # after an intended change: rewrite the baseline
#
# The counts come from callgrind through gungraun (benches/decisions_ir.rs):
# one run of each decision under valgrind, the same count on every run of the
# same binary, however loaded the machine is. gungraun needs its runner, of the
# same version as the gungraun crate in Cargo.lock; it is installed once with
# cargo into $ASSETGATE_PEERS/bin (default .peers/bin) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peers=${ASSETGATE_PEERS:-$root/.peers}

update=0
[ "${1:-}" = "--update" ] && update=1

command -v valgrind >/dev/null 2>&1 || {
  echo "ir-check: needs valgrind (apt-get install valgrind)" >&2
  exit 1
}

version=$(awk '/^name = "gungraun"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
runner="$peers/bin/gungraun-runner"
if ! [ -x "$runner" ] || [ "$("$runner" --version 2>/dev/null | awk '{print $NF}')" != "$version" ]; then
  echo "== installing gungraun-runner $version into $peers/bin (once, a few minutes)" >&2
  cargo install gungraun-runner --version "$version" --locked --root "$peers" -q
fi
# gungraun finds its runner on PATH.
export PATH="$peers/bin:$PATH"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
if [ $update = 1 ]; then
  ASSETGATE_IR_UPDATE=1 cargo bench -q --bench decisions_ir -- --nocapture 2>&1 | tee "$out" || status=$?
else
  cargo bench -q --bench decisions_ir 2>&1 | tee "$out" || status=$?
fi

if [ $update = 1 ] && [ $status = 0 ]; then
  # "decisions_ir::decisions::link_verify plain:plain_link()" then, a few
  # lines on, "  Instructions:  12345|..." (the first number is this run's).
  {
    echo "# Instructions per call of the pure decisions (callgrind via gungraun,"
    echo "# benches/decisions_ir.rs). benches/ir-check.sh fails above +10 %."
    echo "# Rewritten by benches/ir-check.sh --update; $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)."
    awk '
      /^decisions_ir::decisions::/ { split($1, p, "::"); split($2, q, ":"); name = p[3] "." q[1] }
      /^ *Instructions:/ && name != "" { n = $2; sub(/\|.*/, "", n); gsub(/[^0-9]/, "", n); print name, n; name = "" }
    ' "$out"
  } > benches/ir-baseline.txt.new
  mv benches/ir-baseline.txt.new benches/ir-baseline.txt
  echo "== benches/ir-baseline.txt:" >&2
  cat benches/ir-baseline.txt >&2
fi
exit $status
