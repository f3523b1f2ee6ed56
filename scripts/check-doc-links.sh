#!/usr/bin/env bash
# Offline check of the links in the repository's Markdown files (the README,
# docs/, the READMEs beside the code): every link to a file or directory of the
# repository must exist, and every #anchor must name a heading of the page it
# points to (GitHub's heading slugs). No network: external URLs are not checked.
#
#   scripts/check-doc-links.sh            # what scripts/test.sh runs
#
# The checker is remark-validate-links (with remark-cli), from the committed
# lockfile in scripts/doc-links/, installed into $ASSETGATE_PEERS/doc-links
# (default .peers/) once, and again when the lockfile changes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peers=${ASSETGATE_PEERS:-$root/.peers}
dir=$peers/doc-links
want=$(sha256sum scripts/doc-links/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$dir/.package-lock.sha256" 2>/dev/null)" != "$want" ]; then
  printf '\n== installing remark-validate-links into %s (npm ci, once)\n' "$dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp scripts/doc-links/package.json scripts/doc-links/package-lock.json "$dir/"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  echo "$want" >"$dir/.package-lock.sha256"
fi

# The committed Markdown files (not node_modules, target/, .peers/).
mapfile -t files < <(git ls-files -- '*.md')
# --frail: a warning (a broken link) fails the run. repository:false: links are
# checked as files of this checkout, whatever the git remote says.
NODE_PATH="$dir/node_modules" "$dir/node_modules/.bin/remark" \
  --no-config --no-ignore --quiet --frail --no-stdout \
  --use "$dir/node_modules/remark-validate-links/index.js=repository:false" \
  -- "${files[@]}"
