"""Reference tusd v2 pre-create hook in FastAPI: what a granite-assets user writes.

granite-assets' guide says: "Your tusd pre-create hook must replicate this
computation to validate incoming uploads", "Use hmac.compare_digest
(constant-time) for the comparison", "strip path traversal sequences (`..`,
leading slashes) and enforce an allowlist of characters". This is that hook,
written the straightforward FastAPI way, with the same checks assetgate makes on
the benchmark's (valid) request:

- the five metadata fields are present and non-empty;
- key sanity: no leading `/`, no empty / `.` / `..` segment, no `\\ ? # %` and
  no control character, at most 1024 bytes;
- visibility is `public` or `private`;
- HMAC-SHA256 over `f"{expires}:{key}:{visibility}:{content_type}"` under every
  configured secret, compared with `hmac.compare_digest`;
- expiry: `now <= expires + clock_skew`, and not further ahead than `max_ttl`.

It answers like assetgate does on tusd v2: always 200 + JSON, `{}` to accept,
`{"RejectUpload": true, "HTTPResponse": {...}}` to reject.

Configuration comes from the environment: UPLOAD_SECRETS (comma-separated,
newest first), CLOCK_SKEW (s, default 30), MAX_TTL (s, default 86400).
Run it as benches/run.py does: `uvicorn app:app --workers 2 --no-access-log`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRETS = [s.encode() for s in os.environ.get("UPLOAD_SECRETS", "").split(",") if s]
CLOCK_SKEW = int(os.environ.get("CLOCK_SKEW", "30"))
MAX_TTL = int(os.environ.get("MAX_TTL", "86400"))
FIELDS = ("asset-key", "content-type", "visibility", "upload-expires", "upload-token")

app = FastAPI()


def reject(code: str, message: str, status: int = 403) -> JSONResponse:
    body = json.dumps({"error": {"code": code, "message": message}})
    return JSONResponse(
        {
            "RejectUpload": True,
            "HTTPResponse": {
                "StatusCode": status,
                "Body": body,
                "Header": {"Content-Type": "application/json"},
            },
        }
    )


def key_ok(key: str) -> bool:
    if not key or len(key.encode()) > 1024 or key.startswith("/"):
        return False
    if any(c in key for c in "\\?#%") or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in key):
        return False
    return all(seg not in ("", ".", "..") for seg in key.split("/"))


@app.post("/tusd")
async def tusd_hook(request: Request) -> JSONResponse:
    hook = await request.json()
    if hook.get("Type") != "pre-create":
        return JSONResponse({})
    meta = hook["Event"]["Upload"].get("MetaData") or {}
    for field in FIELDS:
        if not meta.get(field):
            return reject("metadata_missing", f"missing upload metadata: {field}", 400)
    key, content_type = meta["asset-key"], meta["content-type"]
    visibility, expires_s, token = meta["visibility"], meta["upload-expires"], meta["upload-token"]
    if not expires_s.isdigit():
        return reject("metadata_invalid", "upload-expires is not a number", 400)
    if not key_ok(key):
        return reject("key_invalid", "asset key refused", 400)
    if visibility not in ("public", "private"):
        return reject("visibility_invalid", "visibility must be public or private", 400)
    payload = f"{expires_s}:{key}:{visibility}:{content_type}".encode()
    matched = False
    for secret in SECRETS:  # every secret, like assetgate (rotation)
        expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, token)
    if not matched:
        return reject("token_invalid", "upload token is not valid")
    now = int(time.time())
    expires = int(expires_s)
    if now > expires + CLOCK_SKEW:
        return reject("token_expired", "upload token has expired")
    if expires - now > MAX_TTL + CLOCK_SKEW:
        return reject("token_ttl_too_long", "upload token lives too long")
    return JSONResponse({})
