"""Upload one file through a real tus server with a real tus client (tuspy),
using an upload URL minted by the real granite-assets library.

Used by tests/e2e_tus.rs. Prints one JSON object on stdout:
  {"ok": true, "url": "<upload url>"}                           accepted
  {"ok": false, "status": 403, "body": "<server response body>"}  rejected

  python tus_upload.py --endpoint http://127.0.0.1:PORT/files/ --file F \
      --key K --content-type CT --visibility private --secret S [--ttl 600] \
      [--tamper content-type=image/png] [--chunk-size 65536]

--tamper NAME=VALUE changes one metadata value AFTER granite signed it (a
client trying to reuse a token for something else).
"""

import argparse
import base64
import json
import sys

from granite_assets import AssetVisibility, LocalNginxAssetRepositoryConfig, build_asset_repository
from tusclient import client
from tusclient.exceptions import TusCommunicationError


def decode_metadata(header: str) -> dict:
    """tus Upload-Metadata: "key b64, key b64" -> {key: value}."""
    out = {}
    for item in header.split(","):
        parts = item.strip().split(" ")
        out[parts[0]] = base64.b64decode(parts[1]).decode("utf-8") if len(parts) > 1 else ""
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--content-type", required=True)
    ap.add_argument("--visibility", default="private", choices=["public", "private"])
    ap.add_argument("--secret", required=True)
    ap.add_argument("--ttl", type=int, default=600)
    ap.add_argument("--tamper", action="append", default=[])
    ap.add_argument("--chunk-size", type=int, default=256 * 1024)
    args = ap.parse_args()

    base = args.endpoint.rsplit("/files", 1)[0]
    repo = build_asset_repository(
        LocalNginxAssetRepositoryConfig(
            storage_path="/nonexistent-assetgate-test",
            base_url="http://assets.invalid",
            tusd_url=base,
            upload_secret=args.secret,
        )
    )
    visibility = AssetVisibility.PUBLIC if args.visibility == "public" else AssetVisibility.PRIVATE
    minted = repo.build_upload_url(args.key, args.content_type, args.ttl, visibility=visibility)
    metadata = decode_metadata(minted.headers["Upload-Metadata"])
    for t in args.tamper:
        name, _, value = t.partition("=")
        metadata[name] = value

    tus = client.TusClient(args.endpoint, headers={"Tus-Resumable": minted.headers["Tus-Resumable"]})
    try:
        uploader = tus.uploader(args.file, chunk_size=args.chunk_size, metadata=metadata, retries=0)
        uploader.upload()
    except TusCommunicationError as e:
        body = e.response_content
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        print(json.dumps({"ok": False, "status": e.status_code, "body": body}))
        return 0
    print(json.dumps({"ok": True, "url": uploader.url}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
