// Download links for assets published by assetgate, without the asset tree
// (Node 20+, node:crypto only).
//
// granite-assets' build_download_url(key, ttl_seconds) decides between a public
// URL and a signed private one by looking for the file on the application's own
// disk; with the S3 backend there is no such file ("asset not found"). This
// module mints the same links from the key and visibility of the
// `upload.finalized` event (data.key, data.visibility), byte for byte what
// granite-assets 0.1.7 returns:
//
//   public:  {baseUrl without trailing /}/{publicPrefix}/{key}
//   private: {baseUrl without trailing /}/{privatePrefix}/{key}?md5={token}&expires={expires}
//            uri     = path of baseUrl (trailing / removed) + `/${privatePrefix}/${key}`
//            token   = base64url_nopad(md5(`${expires}${uri} ${secret}`))
//            expires = now + ttlSeconds (default 3600)
//
// tests/link_signers.rs runs this file, examples/link_signer.py and the real
// granite-assets on granite's stored vectors and generated keys and compares
// the bytes; `assetgate verify link` accepts what it signs.
//
// Like granite, `url` carries the key raw (fetch() and browsers percent-encode
// it on the wire and nginx decodes it back). With { encoded: true } the path is
// percent-encoded as a client sends it (byte for byte `assetgate sign link`).
// Keys nginx would rewrite (empty, leading '/', '//', trailing '/', '.' or '..'
// segments, control characters) are refused: no link to them can verify.
//
//   import { LinkSigner } from './link_signer.mjs';
//   const signer = new LinkSigner('https://media.example.com/assets', secret);
//   const url = signer.fromEvent(verifiedEvent, { ttlSeconds: 600 });
//
// The secret is assetgate's newest [link] secret (granite's secure_link_secret).
// Verify the event's signature (Standard Webhooks, docs/events.md) first.
//
// CLI: node link_signer.mjs --base-url URL --secret-file FILE [--ttl N | --expires UNIX]
//      [--encoded] KEY public|private       (--batch: JSON cases on stdin, for the tests)

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export const PUBLIC = 'public';
export const PRIVATE = 'private';
export const DEFAULT_TTL_SECONDS = 3600; // granite's secure_link_ttl_seconds

// RFC 3986 pchar minus '%', plus '/': kept as is; every other byte is %XX.
const PATH_SAFE = new Set(
  Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/!$&'()*+,;=:@"),
);

export class LinkSigner {
  constructor(baseUrl, secret, { publicPrefix = PUBLIC, privatePrefix = PRIVATE, ttlSeconds = DEFAULT_TTL_SECONDS } = {}) {
    if (!secret) throw new Error('the link secret is empty');
    // granite signs Python's urlparse(base_url).path raw. Accept only
    // scheme://host[:port][/path] so that path is unambiguous: no query,
    // fragment, ';params' or '%' (WHATWG URL would normalise them).
    const m = /^(https?:\/\/[^/?#;]+)(\/[^?#;%]*)?$/i.exec(baseUrl);
    if (!m) throw new Error(`baseUrl must be scheme://host[:port][/path], nothing more: ${JSON.stringify(baseUrl)}`);
    this.origin = m[1];
    this.basePath = (m[2] ?? '').replace(/\/+$/, '');
    this.secret = secret;
    this.prefixes = { [PUBLIC]: publicPrefix, [PRIVATE]: privatePrefix };
    this.ttlSeconds = ttlSeconds;
  }

  // The link granite's build_download_url would return for an asset stored
  // with `visibility` ('public' or 'private'). `expires` (Unix seconds)
  // overrides now + ttlSeconds. Public links carry no signature, as granite's.
  downloadUrl(key, visibility, { ttlSeconds, expires, encoded = false } = {}) {
    checkKey(key);
    if (!Object.hasOwn(this.prefixes, visibility)) {
      throw new Error(`visibility must be 'public' or 'private', not ${JSON.stringify(visibility)}`);
    }
    const uri = `${this.basePath}/${this.prefixes[visibility]}/${key}`;
    const url = this.origin + (encoded ? encodePath(uri) : uri);
    if (visibility === PUBLIC) return url;
    if (expires === undefined) {
      expires = Math.floor(Date.now() / 1000) + (ttlSeconds ?? this.ttlSeconds);
    }
    if (!Number.isSafeInteger(expires)) throw new Error('expires must be an integer');
    return `${url}?md5=${sign(this.secret, uri, expires)}&expires=${expires}`;
  }

  // The link for the asset of a verified upload.finalized event (parsed body).
  // Any other event (upload.failed: nothing was published) is refused.
  fromEvent(event, options = {}) {
    if (event?.type !== 'upload.finalized') {
      throw new Error(`not an upload.finalized event: ${JSON.stringify(event?.type)}`);
    }
    return this.downloadUrl(event.data.key, event.data.visibility, options);
  }
}

// nginx secure_link_md5 "$secure_link_expires$uri SECRET", base64url, no padding.
export function sign(secret, uri, expires) {
  return createHash('md5').update(`${expires}${uri} ${secret}`, 'utf8').digest('base64url');
}

function encodePath(path) {
  let out = '';
  for (const b of Buffer.from(path, 'utf8')) {
    out += PATH_SAFE.has(b) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function checkKey(key) {
  if (typeof key !== 'string' || key === '' || key.startsWith('/')) {
    throw new Error(`asset key must be non-empty and not start with '/': ${JSON.stringify(key)}`);
  }
  // Unicode category Cc, as Python's unicodedata and Rust's char::is_control.
  if (/\p{Cc}/u.test(key)) throw new Error('asset key contains a control character');
  for (const segment of key.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new Error(`asset key has an empty, '.' or '..' segment (nginx would sign another path): ${JSON.stringify(key)}`);
    }
  }
}

function batch() {
  const cases = JSON.parse(readFileSync(0, 'utf8'));
  const out = cases.map((c) => {
    const s = new LinkSigner(c.base_url, c.secret);
    let result;
    try {
      result = {
        url: s.downloadUrl(c.key, c.visibility, { expires: c.expires }),
        encoded: s.downloadUrl(c.key, c.visibility, { expires: c.expires, encoded: true }),
      };
    } catch (e) {
      result = { error: e.message };
    }
    try {
      result.event_url = s.fromEvent(c.event, { expires: c.expires });
    } catch (e) {
      result.event_error = e.message;
    }
    return result;
  });
  process.stdout.write(JSON.stringify(out));
}

function main(argv) {
  const opts = { ttl: DEFAULT_TTL_SECONDS, encoded: false };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--batch') return batch();
    else if (a === '--encoded') opts.encoded = true;
    else if (['--base-url', '--secret-file', '--ttl', '--expires'].includes(a)) opts[a.slice(2)] = argv[++i];
    else rest.push(a);
  }
  const [key, visibility] = rest;
  if (!opts['base-url'] || !opts['secret-file'] || !key || !visibility) {
    process.stderr.write('usage: node link_signer.mjs --base-url URL --secret-file FILE [--ttl N | --expires UNIX] [--encoded] KEY public|private\n');
    process.exitCode = 2;
    return;
  }
  const secret = readFileSync(opts['secret-file'], 'utf8').split('\n')[0].trim();
  try {
    const signer = new LinkSigner(opts['base-url'], secret);
    const expires = opts.expires === undefined ? undefined : Number(opts.expires);
    console.log(signer.downloadUrl(key, visibility, { ttlSeconds: Number(opts.ttl), expires, encoded: opts.encoded }));
  } catch (e) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exitCode = 2;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main(process.argv.slice(2));
