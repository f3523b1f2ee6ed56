// Receive assetgate's events in a Node application: plain `node:http`, no
// framework, the twin of examples/fastapi_receiver.py.
//
// assetgate POSTs `upload.finalized` / `upload.failed` to `[events] url`,
// signed per Standard Webhooks. This server:
//
// - verifies every delivery with the `standardwebhooks` package (401
//   otherwise: assetgate retries, an attacker gets nowhere);
// - is idempotent by `webhook-id`: assetgate delivers at least once, so the
//   same event can arrive twice (a timeout after the app committed, a
//   restart); the second time it answers 204 and changes nothing;
// - records the asset (key, size, sha256, path, state) together with the
//   event id, in one atomic write of its state file (write, fsync, rename):
//   the id and its effect are on disk together or not at all. A real
//   application does the same in one transaction of its own database (Node 20
//   has no SQLite built in, and this example installs nothing but the
//   verifier);
// - serves `GET /assets/{key}`: what the client polls instead of asking the
//   storage whether its upload landed (the "confirm" call of the seeds' flow).
//
// Run it (Node.js >= 20):
//
//     npm ci --prefix examples/node_receiver
//     ASSETGATE_EVENTS_SECRET=whsec_... ASSETS_DB=/var/lib/app/assets.json \
//         PORT=8000 node examples/node_receiver/receiver.mjs
//
// and point assetgate at it:
//
//     [events]
//     url = "http://127.0.0.1:8000/hooks/assets"
//     dir = "/var/lib/assetgate/events"
//     # secret: ASSETGATE_EVENTS_SECRET(_FILE), the same whsec_ value
//
// It prints `listening <port>` once it accepts connections (PORT=0 picks a
// free one). tests/events.rs runs this file as it is.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname } from 'node:path';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';

// assetgate's events are a few hundred bytes: refuse anything far larger
// before reading it all.
const MAX_BODY = 64 * 1024;

if (!process.env.ASSETGATE_EVENTS_SECRET) {
  console.error('set ASSETGATE_EVENTS_SECRET to the whsec_ secret of assetgate\'s [events]');
  process.exit(64);
}
const webhook = new Webhook(process.env.ASSETGATE_EVENTS_SECRET);
const dbPath = process.env.ASSETS_DB || 'assets.json';

// { events: { webhookId: { type, received_at } }, assets: { key: {...} } }
let state = load(dbPath);

function load(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return { events: {}, assets: {} };
    throw e;
  }
}

// Replaces the state file with `next` atomically and durably: a crash leaves
// either the old file or the new one.
function commit(path, next) {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, JSON.stringify(next));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

// The state after `event` (delivered as `id`), or null if `id` was seen.
function apply(current, id, event) {
  if (Object.hasOwn(current.events, id)) return null;
  const next = structuredClone(current);
  next.events[id] = { type: event.type, received_at: Date.now() / 1000 };
  const d = event.data || {};
  const asset = d.key ? next.assets[d.key] : undefined;
  if (event.type === 'upload.finalized') {
    next.assets[d.key] = {
      key: d.key, state: 'ready', reason: null, visibility: d.visibility,
      content_type: d.content_type, size: d.size, sha256: d.sha256, path: d.path,
      upload_id: d.upload_id, at: d.finalized_at,
    };
  } else if (event.type === 'upload.failed' && d.key && (!asset || asset.state !== 'ready')) {
    // Never overwrite an asset that is ready with a failed newcomer (a
    // conflict is exactly that case).
    next.assets[d.key] = {
      ...(asset || { key: d.key, visibility: null, content_type: null, size: null, sha256: null, path: null }),
      state: 'failed', reason: d.reason, upload_id: d.upload_id, at: d.failed_at,
    };
  }
  return next;
}

function answer(res, status, obj) {
  const body = obj === undefined ? '' : JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function assetsHook(req, res) {
  let body;
  try {
    body = await readBody(req);
  } catch (e) {
    return answer(res, e.status || 400, { detail: e.message });
  }
  let event;
  try {
    // The raw bytes, as signed: never a re-serialised object.
    event = webhook.verify(body, req.headers);
  } catch (e) {
    if (e instanceof WebhookVerificationError) return answer(res, 401, { detail: 'invalid signature' });
    return answer(res, 400, { detail: 'not a JSON event' });
  }
  if (event === null || typeof event !== 'object' || typeof event.type !== 'string') {
    return answer(res, 400, { detail: 'not an event' });
  }
  // From here to the answer nothing awaits: one request's read-modify-write
  // never interleaves with another's.
  const next = apply(state, req.headers['webhook-id'], event);
  if (next !== null) {
    try {
      commit(dbPath, next);
    } catch (e) {
      console.error(`cannot record event: ${e.message}`);
      return answer(res, 500, { detail: 'not recorded' }); // assetgate retries
    }
    state = next;
  }
  res.writeHead(204);
  res.end();
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://receiver');
  if (req.method === 'POST' && url.pathname === '/hooks/assets') {
    assetsHook(req, res).catch((e) => {
      console.error(e);
      if (!res.headersSent) answer(res, 500, { detail: 'internal error' });
    });
    return;
  }
  if (req.method === 'GET' && url.pathname.startsWith('/assets/')) {
    let key;
    try {
      key = decodeURIComponent(url.pathname.slice('/assets/'.length));
    } catch {
      return answer(res, 400, { detail: 'bad key' });
    }
    const asset = Object.hasOwn(state.assets, key) ? state.assets[key] : undefined;
    return asset ? answer(res, 200, asset) : answer(res, 404, { detail: 'not landed yet' });
  }
  if (req.method === 'GET' && url.pathname === '/events/count') {
    return answer(res, 200, { events: Object.keys(state.events).length });
  }
  return answer(res, 404, { detail: 'not found' });
});

server.listen(Number(process.env.PORT ?? 8000), process.env.HOST || '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
