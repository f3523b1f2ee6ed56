// Drives Debian's Chromium (headless, through playwright-core, which never
// downloads a browser) through the page of tests/browser/page/, served by
// nginx. Started by tests/e2e_browser.rs, which starts the stack and asserts on
// what this prints.
//
//   node tests/browser/run.mjs PLAN.json
//
// PLAN.json: {"page": "http://127.0.0.1:A/page/", "chromium": "/usr/bin/chromium",
//             "out": "target/e2e-browser/<test>", "steps": [STEP, ...]}
// STEP:      {"kind": "upload" | "forged" | "resume", "label": "...", "name": "a.pdf",
//             "type": "application/pdf", "file": "/path/to/bytes",
//             "chunkSize": 65536, "parallelUploads": 1, "download": true}
//            ("download": false: an upload or resume step stops once uploaded, no
//             link asked; "pauseUntil": "/control/go": a resume step waits, between
//             its two attempts, until that URL answers 200)
//          or {"kind": "guide", "label": "...", "name": "a.pdf",
//             "type": "application/pdf", "file": "/path/to/bytes",
//             "key": "browser/a.pdf"}   (the granite guide's snippet as written)
//          or {"kind": "visit", "label": "...", "url": "http://...",
//             "how": "top" | "iframe"}
//
// For an upload step the page is handed the file's bytes (base64) and runs
// the seeds' flow; its result object is collected. A visit step opens `url`
// as a top-level document in a new tab ("top") or in an iframe of the page
// ("iframe") and records what the browser got (status, Content-Type, a
// download); whether a script in it ran is judged by the Rust test from its
// own beacon server, which such a script would have called before `load`. Prints one JSON object on stdout:
//   {"origin": "...", "results": [...], "console": [...], "pageErrors": [...],
//    "screenshot": "<out>/screenshot.png"}
// and exits 0 whenever the page could be driven (the Rust test judges the
// results); exits 1 with a message on stderr when it could not.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The flags this machine needs (no GPU, no sandbox as root, and no background
// connections: the network is closed). Playwright adds none of its own
// (ignoreDefaultArgs); it only needs its pipe and a fresh profile.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];
const STEP_TIMEOUT_MS = 30000;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  mkdirSync(plan.out, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'assetgate-chromium-'));
  const consoleLines = [];
  const pageErrors = [];
  const browser = await chromium.launch({
    executablePath: plan.chromium,
    ignoreDefaultArgs: true,
    args: [...CHROMIUM_ARGS, `--user-data-dir=${profile}`, '--remote-debugging-pipe'],
    timeout: 20000,
  });
  try {
    // A context of our own: visit steps open more tabs in it.
    const context = await browser.newContext({ viewport: { width: 1100, height: 760 }, acceptDownloads: true });
    const page = await context.newPage();
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const resp = await page.goto(plan.page, { timeout: 15000 });
    if (!resp || resp.status() !== 200) {
      throw new Error(`page ${plan.page}: ${resp ? resp.status() : 'no response'}`);
    }
    await page.waitForFunction(() => window.assetgateTest && window.tus, null, { timeout: 10000 });
    const origin = await page.evaluate(() => location.origin);
    const results = [];
    for (const step of plan.steps) {
      if (step.kind === 'visit') {
        results.push(await visit(browser, page, step));
        continue;
      }
      const arg = { ...step, b64: readFileSync(step.file).toString('base64') };
      delete arg.file;
      try {
        results.push(
          await withTimeout(
            page.evaluate((a) => window.assetgateTest.run(a), arg),
            STEP_TIMEOUT_MS,
            `step ${step.label}`,
          ),
        );
      } catch (e) {
        // Recorded, not thrown: the screenshot below still shows how far it got.
        results.push({ label: step.label, kind: step.kind, error: String(e && e.message ? e.message : e) });
      }
    }
    const screenshot = join(plan.out, 'screenshot.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    process.stdout.write(
      JSON.stringify({ origin, results, console: consoleLines, pageErrors, screenshot }) + '\n',
    );
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

// Opens step.url as a document and reports what happened; never throws.
async function visit(browser, page, step) {
  const out = { label: step.label, kind: 'visit', how: step.how, url: step.url };
  try {
    if (step.how === 'top') {
      const tab = await page.context().newPage();
      const download = tab.waitForEvent('download', { timeout: 3000 }).then(
        (d) => d.suggestedFilename(),
        () => null,
      );
      try {
        const resp = await tab.goto(step.url, { timeout: 10000 });
        out.status = resp ? resp.status() : null;
        out.contentType = resp ? resp.headers()['content-type'] || null : null;
      } catch (e) {
        // A download aborts the navigation ("Download is starting").
        out.navigationError = String(e && e.message ? e.message : e).split('\n')[0];
      }
      await tab.waitForTimeout(300);
      out.download = await Promise.race([download, tab.waitForTimeout(50).then(() => null)]);
      await tab.close();
    } else {
      // An attachment never loads in a frame: give up waiting after 2 s.
      out.loaded = await page.evaluate(
        (url) =>
          new Promise((resolve) => {
            const f = document.createElement('iframe');
            const done = (loaded) => {
              f.remove();
              resolve(loaded);
            };
            const timer = setTimeout(() => done(false), 2000);
            f.onload = () => {
              clearTimeout(timer);
              setTimeout(() => done(true), 300);
            };
            f.src = url;
            document.body.appendChild(f);
          }),
        step.url,
      );
    }
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
  }
  return out;
}

main().catch((e) => {
  process.stderr.write(`run.mjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
