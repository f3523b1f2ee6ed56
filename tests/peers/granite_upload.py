"""The tus creation headers the real granite-assets library builds, for a
fixed clock: ``repo.build_upload_url(key, content_type, ttl_seconds,
visibility=...)`` with ``time.time`` pinned to ``--now`` (granite computes
``expires = int(time.time()) + ttl``), so a test can ask ``assetgate sign
upload --expires NOW+TTL`` for the very same request.

Used by tests/cli_upload.rs. Reads a JSON list of cases on stdin
(``{"key", "content_type", "visibility", "ttl"}``) and prints one JSON list:
per case, granite's ``headers`` as ``[name, value]`` pairs in granite's order,
and its ``url``.

  python granite_upload.py --secret S --now 1800000000 < cases.json
"""

import argparse
import json
import sys
import time

from granite_assets import AssetVisibility, LocalNginxAssetRepositoryConfig, build_asset_repository


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret", required=True, help="granite's upload_secret")
    ap.add_argument("--now", type=int, required=True, help="the Unix time granite sees")
    args = ap.parse_args()
    cases = json.load(sys.stdin)

    repo = build_asset_repository(
        LocalNginxAssetRepositoryConfig(
            storage_path="/nonexistent-granite-storage",
            base_url="http://127.0.0.1",
            tusd_url="http://127.0.0.1:1080",
            upload_secret=args.secret,
        )
    )
    time.time = lambda: float(args.now)
    out = []
    for c in cases:
        r = repo.build_upload_url(
            c["key"], c["content_type"], c["ttl"], visibility=AssetVisibility(c["visibility"])
        )
        out.append({"url": r.url, "headers": [[k, v] for k, v in r.headers.items()]})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
