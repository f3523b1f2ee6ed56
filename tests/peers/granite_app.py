"""The application of the browser test (tests/e2e_browser.rs): the seeds'
"/api/upload-url" endpoint and a download-link endpoint, backed by the real
granite-assets library. Standard library HTTP server, no framework.

  python granite_app.py --port P --storage /srv/assets --base-url http://127.0.0.1:A \
      --tusd-url http://127.0.0.1:B --upload-secret S --link-secret L

GET /api/upload-url?name=a.pdf&type=application/pdf&size=1234[&visibility=private]
    -> 200 {"url", "method", "headers", "key", "expires_at"}: granite's
       UploadUrlResult for the server-chosen key "browser/<name>" (the seeds'
       best practice: the server picks the key, the client only names the file).
       400 for a bad name/type/size, 413 over 64 MiB.
GET /api/upload-url?key=browser/a.pdf&content_type=application/pdf
    -> the same, with the seed's own parameters (its FastAPI endpoint
       `get_upload_url(key, content_type)`, which the guide's client snippet
       calls); the key must be one of this app's ("browser/<name>").
GET /api/download-url?key=browser/a.pdf
    -> 200 {"url", "expires_at"}: granite's build_download_url (a signed
       secure_link for a private asset). 404 while the asset is not in the
       tree yet: assetgate moves finished uploads in the background, so the page
       polls this (the seeds' "confirm" step).
POST /api/confirm {"key": ...}
    -> 204: the guide's snippet calls it from tus-js-client's onSuccess (the
       seeds' "confirm" step); logged, nothing else.

Prints "listening <port>" on stdout once it accepts connections.
"""

import argparse
import json
import re
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from granite_assets import (
    AssetVisibility,
    LocalNginxAssetRepositoryConfig,
    build_asset_repository,
)
from granite_assets.exceptions import AssetAccessNotSupportedError

MAX_SIZE = 64 * 1024 * 1024
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TYPE = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")


def make_handler(repo, ttl):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # to stderr, one line per request
            sys.stderr.write("app: " + (fmt % args) + "\n")

        def answer(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def upload_url(self, key, ctype, q):
            """granite's UploadUrlResult for `key`, as the seed's endpoint returns it."""
            vis = AssetVisibility.PUBLIC if q.get("visibility") == "public" else AssetVisibility.PRIVATE
            r = repo.build_upload_url(key, ctype, ttl, visibility=vis)
            return {
                "url": r.url,
                "method": r.method,
                "headers": r.headers,
                "key": r.key,
                "expires_at": r.expires_at.isoformat(),
            }

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path == "/api/confirm":
                sys.stderr.write(f"app: confirm {body.decode(errors='replace')}\n")
                self.send_response(204)
                self.end_headers()
                return None
            return self.answer(404, {"error": "no such endpoint"})

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/api/upload-url" and "key" in q:
                # The seed's parameters: no size (granite needs none).
                key, ctype = q["key"], q.get("content_type", "")
                name = key.removeprefix("browser/")
                if key == name or not NAME.match(name) or ".." in name:
                    return self.answer(400, {"error": "not one of this app's keys"})
                if not TYPE.match(ctype):
                    return self.answer(400, {"error": "bad content type"})
                return self.answer(200, self.upload_url(key, ctype, q))
            if url.path == "/api/upload-url":
                name, ctype, size = q.get("name", ""), q.get("type", ""), q.get("size", "")
                if not NAME.match(name) or ".." in name:
                    return self.answer(400, {"error": "bad file name"})
                if not TYPE.match(ctype):
                    return self.answer(400, {"error": "bad content type"})
                if not size.isdigit():
                    return self.answer(400, {"error": "bad size"})
                if int(size) > MAX_SIZE:
                    return self.answer(413, {"error": "too large"})
                return self.answer(200, self.upload_url(f"browser/{name}", ctype, q))
            if url.path == "/api/download-url":
                key = q.get("key", "")
                if not key.startswith("browser/"):
                    return self.answer(400, {"error": "not one of this app's keys"})
                try:
                    r = repo.build_download_url(key, ttl_seconds=ttl)
                except AssetAccessNotSupportedError as e:
                    return self.answer(404, {"error": str(e)})
                expires = r.expires_at.isoformat() if r.expires_at else None
                return self.answer(200, {"url": r.url, "expires_at": expires})
            return self.answer(404, {"error": "no such endpoint"})

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--storage", required=True, help="granite's storage_path: the asset tree")
    ap.add_argument("--base-url", required=True, help="granite's base_url (downloads)")
    ap.add_argument("--tusd-url", required=True, help="granite's tusd_url (uploads)")
    ap.add_argument("--upload-secret", required=True)
    ap.add_argument("--link-secret", required=True)
    ap.add_argument("--ttl", type=int, default=600)
    args = ap.parse_args()

    repo = build_asset_repository(
        LocalNginxAssetRepositoryConfig(
            storage_path=args.storage,
            base_url=args.base_url,
            tusd_url=args.tusd_url,
            upload_secret=args.upload_secret,
            secure_link_secret=args.link_secret,
        )
    )
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(repo, args.ttl))
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
