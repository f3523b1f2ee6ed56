#!/usr/bin/env python3
"""Mint upload-token test vectors with the REAL granite-assets library.

Usage (from the crate root, with granite-assets installed, e.g. in .peers/venv):

    .peers/venv/bin/python tests/vectors/mint_granite_uploads.py > tests/vectors/granite-uploads.json

Every vector comes from ``LocalNginxAssetRepository.build_upload_url`` (the
public API a granite user calls); nothing here re-implements granite's token.
``metadata`` is the ``Upload-Metadata`` header decoded the way tusd does
(``ParseMetadataHeader``: split on ",", trim, split on one space, padded
standard base64, invalid elements dropped, last duplicate wins), which is what
a hook receives in ``Upload.MetaData``.

Tokens expire, so each vector records ``minted_at`` (= expires - ttl, the
library's own ``int(time.time())``) and ``ttl_seconds``: verifiers must use an
injected clock, never the wall clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys

import granite_assets
from granite_assets.enums import AssetVisibility
from granite_assets.models import LocalNginxAssetRepositoryConfig
from granite_assets.repositories.local_nginx import LocalNginxAssetRepository

# Test-only secrets (also in the JSON): never use them anywhere else.
SECRETS = {
    "newest": "test-upload-secret-newest-0123456789",
    "older": "test-upload-secret-older-9876543210",
}

# (key, content_type, visibility, ttl_seconds, secret)
CASES = [
    ("invoices/inv-001.pdf", "application/pdf", AssetVisibility.PRIVATE, 3600, "newest"),
    ("photos/été 2026/plage.jpg", "image/jpeg", AssetVisibility.PUBLIC, 3600, "newest"),
    ("docs/readme.txt", "text/plain; charset=utf-8", AssetVisibility.PRIVATE, 600, "newest"),
    ("日本語/ファイル名.png", "image/png", AssetVisibility.PUBLIC, 86400, "newest"),
    ("a/b/c/d/e/deep file (1).bin", "application/octet-stream", AssetVisibility.PRIVATE, 60, "older"),
    ("avatars/ünïcødé ñame.webp", "image/webp", AssetVisibility.PUBLIC, 3600, "older"),
    ("reports/2026/q1 summary.csv", "text/csv;charset=UTF-8;header=present", AssetVisibility.PRIVATE, 1, "newest"),
    ("empty/empty.txt", "text/plain", AssetVisibility.PRIVATE, 3600, "older"),
    ("video/clip.mp4", "video/mp4", AssetVisibility.PUBLIC, 7 * 86400, "newest"),
]


def tusd_parse_metadata(header: str) -> dict[str, str]:
    """tusd's ParseMetadataHeader, in Python (see module docstring)."""
    meta: dict[str, str] = {}
    for element in header.split(","):
        parts = element.strip().split(" ")
        if len(parts) > 2:
            continue
        key = parts[0]
        if key == "":
            continue
        value = ""
        if len(parts) == 2:
            try:
                value = base64.b64decode(parts[1], validate=True).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                continue
        meta[key] = value
    return meta


def main() -> None:
    vectors = []
    for key, content_type, visibility, ttl, which in CASES:
        repo = LocalNginxAssetRepository(
            LocalNginxAssetRepositoryConfig(
                storage_path="/srv/assets",
                base_url="https://cdn.example.com/assets",
                tusd_url="https://up.example.com",
                upload_secret=SECRETS[which],
            )
        )
        result = repo.build_upload_url(key, content_type, ttl_seconds=ttl, visibility=visibility)
        header = result.headers["Upload-Metadata"]
        metadata = tusd_parse_metadata(header)
        expires = int(result.expires_at.timestamp())
        assert metadata["upload-expires"] == str(expires), "granite signs the expiry it reports"
        vectors.append(
            {
                "key": key,
                "content_type": content_type,
                "visibility": visibility.value,
                "expires": metadata["upload-expires"],
                "ttl_seconds": ttl,
                "minted_at": expires - ttl,
                "token": metadata["upload-token"],
                "url": result.url,
                "method": result.method,
                "upload_metadata_header": header,
                "metadata": metadata,
                "secret": which,
            }
        )
    out = {
        "generator": "granite-assets",
        "version": granite_assets.__version__,
        "api": "LocalNginxAssetRepository.build_upload_url",
        "python": sys.version.split()[0],
        "secrets": SECRETS,
        "vectors": vectors,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
