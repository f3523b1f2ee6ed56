"""Upload one file through a real tus server with a real tus client (tuspy),
using an upload URL minted by the real granite-assets library.

Used by tests/e2e_tus.rs, tests/e2e_tusd.rs and tests/e2e_stack.rs. Prints one
JSON object on stdout:
  {"ok": true, "url": "<upload url>", "offset": N}                accepted
  {"ok": false, "status": 403, "body": "<server response body>",
   "phase": "create" | "patch", "url": ..., "offset": N, "error": "..."}
                                                                  refused / failed
("status" is null when no HTTP answer came back: connection refused, reset.)

  python tus_upload.py --endpoint http://127.0.0.1:PORT/files/ --file F \
      --key K --content-type CT --visibility private --secret S [--ttl 600] \
      [--tamper content-type=image/png] [--chunk-size 65536] \
      [--stop-at N] [--url UPLOAD_URL] [--send-metadata-header]

--tamper NAME=VALUE changes one metadata value AFTER granite signed it (a
client trying to reuse a token for something else).
--stop-at N stops once N bytes are uploaded (the upload stays unfinished);
--url UPLOAD_URL resumes that upload (HEAD for the offset, then PATCH the rest)
instead of creating one.
--upload-metadata H reuses the Upload-Metadata H (printed as "upload_metadata"
by an earlier run): a client resuming keeps the token it created the upload with.
--send-metadata-header sends granite's Upload-Metadata header on EVERY request
(tuspy's `headers`), as a granite user passing granite's headers does; what
assetgate's `token` session mode needs on PATCH/HEAD.
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


def mint(endpoint: str, secret: str, key: str, content_type: str, ttl: int, visibility: str) -> dict:
    """granite's upload URL for `key`: {"Upload-Metadata": ..., "Tus-Resumable": ...}."""
    base = endpoint.rsplit("/files", 1)[0]
    repo = build_asset_repository(
        LocalNginxAssetRepositoryConfig(
            storage_path="/nonexistent-assetgate-test",
            base_url="http://assets.invalid",
            tusd_url=base,
            upload_secret=secret,
        )
    )
    vis = AssetVisibility.PUBLIC if visibility == "public" else AssetVisibility.PRIVATE
    return repo.build_upload_url(key, content_type, ttl, visibility=vis).headers


def text(body) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body


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
    ap.add_argument("--stop-at", type=int, default=None)
    ap.add_argument("--url", default=None)
    ap.add_argument("--send-metadata-header", action="store_true")
    ap.add_argument("--upload-metadata", default=None, help="reuse this Upload-Metadata (a resume keeps its token)")
    args = ap.parse_args()

    headers = mint(args.endpoint, args.secret, args.key, args.content_type, args.ttl, args.visibility)
    if args.upload_metadata:
        headers["Upload-Metadata"] = args.upload_metadata
    metadata = decode_metadata(headers["Upload-Metadata"])
    for t in args.tamper:
        name, _, value = t.partition("=")
        metadata[name] = value

    client_headers = {"Tus-Resumable": headers["Tus-Resumable"]}
    if args.send_metadata_header:
        client_headers["Upload-Metadata"] = headers["Upload-Metadata"]
    tus = client.TusClient(args.endpoint, headers=client_headers)
    uploader = None
    try:
        uploader = tus.uploader(
            args.file, url=args.url, chunk_size=args.chunk_size, metadata=metadata, retries=0
        )
        uploader.upload(stop_at=args.stop_at)
    except TusCommunicationError as e:
        url = uploader.url if uploader else args.url
        print(
            json.dumps(
                {
                    "ok": False,
                    "status": e.status_code,
                    "body": text(e.response_content),
                    "phase": "patch" if url else "create",
                    "url": url,
                    "offset": uploader.offset if uploader else None,
                    "error": str(e),
                }
            )
        )
        return 0
    print(
        json.dumps(
            {"ok": True, "url": uploader.url, "offset": uploader.offset, "upload_metadata": headers["Upload-Metadata"]}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
