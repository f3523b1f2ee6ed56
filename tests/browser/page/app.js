// The seeds' client-side upload flow (seed 000, "Client-Side Upload
// (JavaScript)", tusd variant), run by tests/browser/run.mjs:
//
//   1. ask the application for upload parameters (granite's UploadUrlResult:
//      url, headers, key) for a file name, type and size;
//   2. upload the File with tus-js-client to `url` (nginx's /files/ on another
//      origin, proxied to tusd; tusd asks assetgate in pre-create);
//   3. ask the application for a download link for `key` (granite's signed
//      secure_link; 404 until assetgate has moved the finished upload) and
//      fetch it through nginx (auth_request to assetgate).
//
// Steps 1 and 2 are the page's own (granite's Upload-Metadata decoded into
// tus-js-client's `metadata`, the README's advice), except in a "guide" step,
// where they are the granite guide's snippet as written (guide_snippet.js:
// granite's `headers` handed to tus-js-client) and the page only watches.
//
// Every step writes a status line into the page (the test's screenshot).
'use strict';

const logEl = document.getElementById('log');
document.getElementById('origins').textContent = `page origin ${location.origin}`;

function line(cls, text) {
  const li = document.createElement('li');
  li.className = cls;
  li.textContent = text;
  logEl.appendChild(li);
}

function b64ToBytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// tus Upload-Metadata ("key base64, key base64") -> {key: value}, values UTF-8.
function decodeMetadata(header) {
  const out = {};
  for (const item of header.split(',')) {
    const [k, v] = item.trim().split(' ');
    out[k] = v === undefined ? '' : new TextDecoder().decode(b64ToBytes(v));
  }
  return out;
}

async function sha256Hex(buf) {
  const d = await crypto.subtle.digest('SHA-256', buf);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}

function path(url) {
  const u = new URL(url);
  return u.pathname + (u.search ? '?…' : '');
}

async function uploadParams(file) {
  const q = new URLSearchParams({ name: file.name, type: file.type, size: String(file.size) });
  const r = await fetch('/api/upload-url?' + q);
  const body = await r.json();
  if (!r.ok) throw new Error(`/api/upload-url answered ${r.status}: ${JSON.stringify(body)}`);
  return body;
}

// Resolves (never rejects) with what the page saw: {ok, url} or
// {ok: false, status, body, message}; `requests` lists "METHOD path status".
function tusUpload(file, options) {
  const requests = [];
  return new Promise((resolve) => {
    const upload = new tus.Upload(file, {
      ...options,
      retryDelays: null, // a failure shows at once, nothing hides it
      removeFingerprintOnSuccess: true,
      onAfterResponse(req, res) {
        requests.push(`${req.getMethod()} ${new URL(req.getURL()).pathname} ${res.getStatus()}`);
      },
      onSuccess() {
        resolve({ ok: true, url: upload.url, requests });
      },
      onError(err) {
        // tus-js-client's DetailedError carries the server's answer.
        const res = err.originalResponse;
        resolve({
          ok: false,
          message: String(err.message || err),
          status: res ? res.getStatus() : null,
          body: res ? res.getBody() : null,
          requests,
        });
      },
    });
    upload.start();
  });
}

async function downloadLink(key, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    const r = await fetch('/api/download-url?' + new URLSearchParams({ key }));
    if (r.ok) return (await r.json()).url;
    last = `${r.status} ${await r.text()}`;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`no download link for ${key} after ${timeoutMs} ms: ${last}`);
}

function count(requests, method) {
  return requests.filter((r) => r.startsWith(method + ' ')).length;
}

// Options for tus-js-client from granite's parameters: granite's
// Upload-Metadata decoded into `metadata` (and `metadataForPartialUploads`),
// the README's advice. (Granite's `headers` as `headers`, the guide's way,
// is the "guide" step's.)
function tusOptions(p, step) {
  const metadata = decodeMetadata(p.headers['Upload-Metadata']);
  const o = { endpoint: p.url, chunkSize: step.chunkSize, metadata };
  if (step.parallelUploads > 1) {
    o.parallelUploads = step.parallelUploads;
    // assetgate requires a token on every partial upload too.
    o.metadataForPartialUploads = metadata;
  }
  return { o, metadata };
}

async function runUpload(step, file) {
  const label = step.label;
  const sent = await sha256Hex(await file.arrayBuffer());
  line('info', `${label}: ${file.name}, ${file.size} bytes, ${file.type}, sha256 ${sent.slice(0, 16)}…`);
  const p = await uploadParams(file);
  line('ok', `${label}: upload parameters from the app: key ${p.key}, ${p.method} ${p.url}`);
  const { o } = tusOptions(p, step);
  const up = await tusUpload(file, o);
  const result = { label, kind: step.kind, key: p.key, endpoint: p.url, sentSha256: sent, upload: up };
  if (!up.ok) {
    line('fail', `${label}: upload failed: ${up.status} ${(up.body || up.message).trim()}`);
    return result;
  }
  const parts = step.parallelUploads > 1 ? ` in ${step.parallelUploads} parallel parts` : '';
  line(
    'ok',
    `${label}: uploaded${parts} to ${new URL(up.url).origin}: ${count(up.requests, 'POST')} POST, ` +
      `${count(up.requests, 'PATCH')} PATCH, upload ${path(up.url)}`,
  );
  // `download: false`: the test downloads it itself (the S3 fleet, where the
  // app has no asset tree for granite's build_download_url to look in).
  if (step.download === false) return result;
  await downloadBack(result, p.key, sent);
  return result;
}

// The download half of a step: granite's link for `key` from the app, then
// the bytes through nginx, compared with what was sent.
async function downloadBack(result, key, sent) {
  const label = result.label;
  const link = await downloadLink(key, 15000);
  result.link = link;
  line('ok', `${label}: download link from the app: ${path(link)}`);
  const r = await fetch(link, { cache: 'no-store' });
  const buf = await r.arrayBuffer();
  const got = await sha256Hex(buf);
  result.download = { status: r.status, length: buf.byteLength, sha256: got };
  const same = r.status === 200 && got === sent;
  line(
    same ? 'ok' : 'fail',
    `${label}: download ${r.status}, ${buf.byteLength} bytes, sha256 ${got.slice(0, 16)}… ` +
      (same ? '= sent' : '≠ sent'),
  );
}

// The granite guide's snippet, run as written (guide_snippet.js) on `file`:
// the page hands it its free variables (`file`, `content_type`, the key to
// ask for) and only watches, through the two ways the snippet reports: its
// onSuccess POSTs /api/confirm, its onError calls console.error('Upload
// failed:', err). The page also notes granite's answer to /api/upload-url (the
// headers the snippet passed on). Then it downloads the bytes back.
async function runGuideSnippet(step, file) {
  const label = step.label;
  const sent = await sha256Hex(await file.arrayBuffer());
  line('info', `${label}: the granite guide's snippet as written, ${file.name}, ${file.size} bytes, ${file.type}`);
  const realFetch = window.fetch;
  const realError = console.error;
  let granite = null;
  const outcome = new Promise((resolve) => {
    window.fetch = async (input, init) => {
      const res = await realFetch(input, init);
      const u = String(input);
      if (u.startsWith('/api/upload-url?')) granite = await res.clone().json();
      if (u === '/api/confirm') resolve({ ok: true, confirmBody: init && init.body, confirmStatus: res.status });
      return res;
    };
    console.error = (...args) => {
      realError.apply(console, args);
      if (args[0] === 'Upload failed:') {
        const err = args[1];
        const res = err && err.originalResponse;
        resolve({
          ok: false,
          message: String((err && err.message) || err),
          status: res ? res.getStatus() : null,
          body: res ? res.getBody() : null,
        });
      }
    };
  });
  globalThis.file = file;
  globalThis.content_type = file.type;
  globalThis.requested_key = step.key;
  let up;
  try {
    // A fresh module instance per step (the URL is the module's identity).
    await import(`./guide_snippet.js?step=${encodeURIComponent(label)}`);
    up = await outcome;
  } finally {
    window.fetch = realFetch;
    console.error = realError;
  }
  const result = { label, kind: step.kind, key: granite && granite.key, granite, sentSha256: sent, upload: up };
  if (!up.ok) {
    line('fail', `${label}: upload failed: ${up.status} ${(up.body || up.message || '').trim()}`);
    return result;
  }
  line('ok', `${label}: onSuccess confirmed ${up.confirmBody} (${up.confirmStatus})`);
  await downloadBack(result, granite.key, sent);
  return result;
}

async function runForged(step, file) {
  const label = step.label;
  line('info', `${label}: ${file.name}, ${file.size} bytes, ${file.type}`);
  const p = await uploadParams(file);
  const { o, metadata } = tusOptions(p, step);
  // The client edits the token it was given: flip its last hex digit.
  const t = metadata['upload-token'];
  metadata['upload-token'] = t.slice(0, -1) + (t.endsWith('0') ? '1' : '0');
  line('info', `${label}: upload-token …${t.slice(-6)} changed to …${metadata['upload-token'].slice(-6)}`);
  const up = await tusUpload(file, o);
  const result = { label, kind: step.kind, key: p.key, endpoint: p.url, upload: up };
  if (up.ok) {
    line('fail', `${label}: a forged token was ACCEPTED (${path(up.url)})`);
    return result;
  }
  let code = null;
  try {
    code = JSON.parse(up.body).error.code;
  } catch (e) {
    code = null;
  }
  result.code = code;
  line(
    code ? 'ok' : 'fail',
    `${label}: rejected, onError saw ${up.status} error.code=${code}: ${up.body}`,
  );
  return result;
}

// granite's `headers` as tus-js-client's `headers` (the guide's options),
// interrupted and resumed: one Upload stops after its first chunk, a second
// one finds it (tus-js-client's URL storage), asks where it stands (HEAD) and
// sends the rest. tus-js-client sends its `headers` on every request: the
// HEAD and the PATCHes carry granite's Upload-Metadata (what
// `session_binding = "token"` checks) and `Tus-Resumable: 1.0.0, 1.0.0`.
async function runResume(step, file) {
  const label = step.label;
  const sent = await sha256Hex(await file.arrayBuffer());
  line('info', `${label}: ${file.name}, ${file.size} bytes, granite's headers as tus-js-client's, interrupted and resumed`);
  const p = await uploadParams(file);
  const requests = [];
  const options = {
    endpoint: p.url,
    headers: p.headers,
    chunkSize: step.chunkSize,
    removeFingerprintOnSuccess: true,
    retryDelays: null,
    onAfterResponse(req, res) {
      requests.push(`${req.getMethod()} ${new URL(req.getURL()).pathname} ${res.getStatus()}`);
    },
  };
  const attempt = (resume) =>
    new Promise((resolve) => {
      const upload = new tus.Upload(file, {
        ...options,
        onChunkComplete() {
          if (!resume) upload.abort().then(() => resolve({ ok: true, stopped: true, url: upload.url }));
        },
        onSuccess() {
          resolve({ ok: true, url: upload.url });
        },
        onError(err) {
          const res = err.originalResponse;
          resolve({
            ok: false,
            message: String(err.message || err),
            status: res ? res.getStatus() : null,
            body: res ? res.getBody() : null,
          });
        },
      });
      if (!resume) return upload.start();
      upload.findPreviousUploads().then((previous) => {
        if (previous.length !== 1) {
          resolve({ ok: false, message: `${previous.length} previous uploads found` });
          return;
        }
        upload.resumeFromPreviousUpload(previous[0]);
        upload.start();
      });
    });
  const first = await attempt(false);
  line(first.ok ? 'ok' : 'fail', `${label}: first part sent, stopped: ${requests.join(', ')}`);
  // `pauseUntil`: the test changes the servers meanwhile (kills the tusd
  // that holds the upload) and then makes this URL answer 200.
  if (first.ok && step.pauseUntil) {
    line('info', `${label}: waiting for ${step.pauseUntil}`);
    while (!(await fetch(step.pauseUntil, { cache: 'no-store' })).ok) {
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  const second = first.ok ? await attempt(true) : first;
  const result = { label, kind: step.kind, key: p.key, granite: p, sentSha256: sent, first, upload: { ...second, requests } };
  if (!second.ok) {
    line('fail', `${label}: resume failed: ${second.status} ${(second.body || second.message || '').trim()}`);
    return result;
  }
  line('ok', `${label}: resumed and finished: ${requests.join(', ')}`);
  if (step.download === false) return result;
  await downloadBack(result, p.key, sent);
  return result;
}

window.assetgateTest = {
  async run(step) {
    const file = new File([b64ToBytes(step.b64)], step.name, { type: step.type });
    try {
      if (step.kind === 'forged') return await runForged(step, file);
      if (step.kind === 'guide') return await runGuideSnippet(step, file);
      if (step.kind === 'resume') return await runResume(step, file);
      return await runUpload(step, file);
    } catch (e) {
      line('fail', `${step.label}: ${e.message || e}`);
      return { label: step.label, kind: step.kind, error: String(e.message || e) };
    }
  },
};
line('info', `tus-js-client loaded: ${typeof tus !== 'undefined' && tus.isSupported ? 'supported' : 'NOT supported'}`);
