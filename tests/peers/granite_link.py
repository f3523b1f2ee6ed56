"""Mint one download link for a private asset with the real granite-assets
library, as an application would: ``LocalNginxAssetRepositoryConfig`` ->
``build_asset_repository`` -> ``repo.build_download_url(key, ttl_seconds)``.

Used by tests/e2e_stack.rs. Prints one JSON object on stdout:

  {"url": "<what granite returned>", "request_target": "<what an HTTP client sends>"}

  python granite_link.py --storage /srv/assets --base-url http://127.0.0.1:8080 \
      --secret S --key photos/a.jpg [--ttl 600]

A negative --ttl makes an expired link (granite 0.1.7 does not validate the TTL).
``request_target`` is the path and query that ``requests`` puts on the request
line for ``url`` (granite leaves the key unencoded in the URL).
"""

import argparse
import json
import sys

import requests
from granite_assets import LocalNginxAssetRepositoryConfig, build_asset_repository


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", required=True, help="granite's storage_path: the asset tree")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--secret", required=True, help="granite's secure_link_secret")
    ap.add_argument("--key", required=True)
    ap.add_argument("--ttl", type=int, default=600)
    args = ap.parse_args()

    repo = build_asset_repository(
        LocalNginxAssetRepositoryConfig(
            storage_path=args.storage,
            base_url=args.base_url,
            secure_link_secret=args.secret,
        )
    )
    url = repo.build_download_url(args.key, ttl_seconds=args.ttl).url
    target = requests.Request("GET", url).prepare().path_url
    print(json.dumps({"url": url, "request_target": target}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
