"""Mint the benchmark's tokens with the REAL granite-assets library.

Run with the peers venv (tests/peers/requirements.txt), by benches/run.py:

    .peers/venv/bin/python benches/mint.py --storage DIR --link-secret S \
        --upload-secret U --files 32 --links 256 > tokens.json

- Writes ``--files`` private files of ``--size`` bytes (default 1 KiB) under
  ``DIR/private/<--dir>/`` (default ``bench``; granite only signs a private
  asset that exists) and mints ``--links`` download links over them with
  ``build_download_url`` (base URL ``http://127.0.0.1``, so the signed ``$uri``
  is ``/private/bench/file-NNNN.bin``). Each link gets its own TTL (1 h + i s),
  so every link is a different request target. ``benches/s3_downloads.py``
  mints a second set of larger files in another directory.
- Mints one upload token with ``build_upload_url`` (public image, TTL 1 h) and
  builds a tusd v2 pre-create hook body from
  ``tests/fixtures/tusd-v2/pre-create.json`` with that fresh metadata.

Nothing here computes a token itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.parse
from pathlib import Path

import granite_assets
from granite_assets import LocalNginxAssetRepositoryConfig, build_asset_repository
from granite_assets.enums import AssetVisibility
from granite_assets.repositories.local_nginx import LocalNginxAssetRepository

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/tusd-v2/pre-create.json"


def tus_metadata(header: str) -> dict[str, str]:
    """tusd's Upload-Metadata parsing (split on ',', trim, one space, base64)."""
    meta = {}
    for element in header.split(","):
        parts = element.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            continue
        meta[parts[0]] = base64.b64decode(parts[1]).decode() if len(parts) == 2 else ""
    return meta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", required=True)
    ap.add_argument("--link-secret", required=True)
    ap.add_argument("--upload-secret", required=True)
    ap.add_argument("--files", type=int, default=32)
    ap.add_argument("--links", type=int, default=256)
    ap.add_argument("--size", type=int, default=1024, help="bytes per file")
    ap.add_argument("--dir", default="bench", help="the files' directory under private/")
    args = ap.parse_args()

    storage = Path(args.storage)
    base = storage / "private" / args.dir
    base.mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(args.files):
        key = f"{args.dir}/file-{i:04d}.bin"
        (storage / "private" / key).write_bytes(os.urandom(args.size))
        keys.append(key)

    repo = build_asset_repository(
        LocalNginxAssetRepositoryConfig(
            storage_path=str(storage),
            base_url="http://127.0.0.1",
            secure_link_secret=args.link_secret,
        )
    )
    links = []
    for i in range(args.links):
        url = repo.build_download_url(keys[i % len(keys)], ttl_seconds=3600 + i).url
        parts = urllib.parse.urlsplit(url)
        links.append(f"{parts.path}?{parts.query}")

    up = LocalNginxAssetRepository(
        LocalNginxAssetRepositoryConfig(
            storage_path=str(storage),
            base_url="http://127.0.0.1",
            tusd_url="http://127.0.0.1:1080",
            upload_secret=args.upload_secret,
        )
    )
    result = up.build_upload_url(
        "photos/2026/bench-upload.jpg", "image/jpeg", ttl_seconds=3600, visibility=AssetVisibility.PUBLIC
    )
    header = result.headers["Upload-Metadata"]
    hook = json.loads(FIXTURE.read_text())
    hook["Event"]["Upload"]["MetaData"] = tus_metadata(header)
    hook["Event"]["HTTPRequest"]["Header"]["Upload-Metadata"] = [header]

    json.dump(
        {
            "granite_assets": granite_assets.__version__,
            "links": links,
            "pre_create_body": json.dumps(hook, ensure_ascii=False, separators=(",", ":")),
            "upload_expires": int(tus_metadata(header)["upload-expires"]),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
