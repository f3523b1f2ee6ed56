"""Receive assetgate's events in a FastAPI application (the seeds' stack).

assetgate POSTs `upload.finalized` / `upload.failed` to `[events] url`, signed
per Standard Webhooks. This app:

- verifies every delivery with the `standardwebhooks` library (401 otherwise:
  assetgate retries, an attacker gets nowhere);
- is idempotent by `webhook-id`: assetgate delivers at least once, so the same
  event can arrive twice (a timeout after the app committed, a restart); the
  second time it answers 204 and changes nothing;
- records the asset (key, size, sha256, path, state) in SQLite, in the same
  transaction as the event id;
- serves `GET /assets/{key}`: what the client polls instead of asking the
  storage whether its upload landed (the "confirm" call of the seeds' flow).

Run it:

    pip install fastapi==0.163.2 uvicorn==0.54.0 standardwebhooks==1.1.0
    ASSETGATE_EVENTS_SECRET=whsec_... ASSETS_DB=/var/lib/app/assets.sqlite3 \
        uvicorn fastapi_receiver:app --host 127.0.0.1 --port 8000

and point assetgate at it:

    [events]
    url = "http://127.0.0.1:8000/hooks/assets"
    dir = "/var/lib/assetgate/events"
    # secret: ASSETGATE_EVENTS_SECRET(_FILE), the same whsec_ value

tests/events.rs runs this file as it is.
"""

import os
import sqlite3
import time

from fastapi import FastAPI, HTTPException, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

app = FastAPI()
webhook = Webhook(os.environ["ASSETGATE_EVENTS_SECRET"])
db = sqlite3.connect(
    os.environ.get("ASSETS_DB", "assets.sqlite3"), check_same_thread=False, isolation_level=None
)
db.executescript(
    """
    CREATE TABLE IF NOT EXISTS webhook_events (
        id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS assets (
        key TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT, visibility TEXT,
        content_type TEXT, size INTEGER, sha256 TEXT, path TEXT, upload_id TEXT,
        at TEXT);
    """
)


@app.post("/hooks/assets", status_code=204)
async def assets_hook(request: Request) -> Response:
    body = await request.body()
    try:
        event = webhook.verify(body, dict(request.headers))
    except WebhookVerificationError:
        raise HTTPException(status_code=401, detail="invalid signature")
    event_id = request.headers["webhook-id"]
    data = event["data"]
    # One transaction: the event id and its effect commit together, so a
    # redelivery finds the id and does nothing.
    db.execute("BEGIN IMMEDIATE")
    try:
        seen = db.execute(
            "INSERT OR IGNORE INTO webhook_events (id, type, received_at) VALUES (?, ?, ?)",
            (event_id, event["type"], time.time()),
        ).rowcount == 0
        if not seen and event["type"] == "upload.finalized":
            db.execute(
                "INSERT OR REPLACE INTO assets VALUES (?, 'ready', NULL, ?, ?, ?, ?, ?, ?, ?)",
                (data["key"], data["visibility"], data["content_type"], data["size"],
                 data["sha256"], data["path"], data["upload_id"], data["finalized_at"]),
            )
        elif not seen and event["type"] == "upload.failed" and data.get("key"):
            # Never overwrite an asset that is ready with a failed newcomer
            # (a conflict is exactly that case).
            db.execute(
                "INSERT INTO assets (key, state, reason, upload_id, at) VALUES (?, 'failed', ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET state = 'failed', reason = excluded.reason, "
                "upload_id = excluded.upload_id, at = excluded.at WHERE assets.state != 'ready'",
                (data["key"], data["reason"], data["upload_id"], data["failed_at"]),
            )
        db.execute("COMMIT")
    except Exception:
        db.execute("ROLLBACK")
        raise  # 500: assetgate retries
    return Response(status_code=204)


@app.get("/assets/{key:path}")
async def asset(key: str) -> dict:
    row = db.execute(
        "SELECT key, state, reason, visibility, content_type, size, sha256, path, upload_id, at "
        "FROM assets WHERE key = ?",
        (key,),
    ).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="not landed yet")
    cols = ["key", "state", "reason", "visibility", "content_type", "size", "sha256", "path", "upload_id", "at"]
    return dict(zip(cols, row))


@app.get("/events/count")
async def events_count() -> dict:
    (n,) = db.execute("SELECT COUNT(*) FROM webhook_events").fetchone()
    return {"events": n}
