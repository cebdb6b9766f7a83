// End-to-end tests of the built-in web page (src/http/page.html, hooks in src/http/PAGE.md):
// the real siglipd binary, driven through a real headless Chromium with playwright-core.
//
//   cd tests/e2e && npm ci && npm test
//
// Environment:
//   SIGLIPD_BIN                 the binary under test (default <repo>/target/debug/siglipd)
//   SIGLIPD_CHROMIUM            the browser (default /usr/bin/chromium); never downloaded, never skipped
//   SIGLIPD_UPDATE_SCREENSHOT=1 also copy the screenshots to docs/screenshot-{demo,live}.png
//
// Screenshots always land in <repo>/target/e2e/ (test artifacts).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BIN = path.resolve(REPO, process.env.SIGLIPD_BIN || 'target/debug/siglipd');
const CHROMIUM = process.env.SIGLIPD_CHROMIUM || '/usr/bin/chromium';
const MODEL = path.join(REPO, 'tests/fixtures/tiny');
const IMAGES = path.join(REPO, 'tests/fixtures/images');
const ARTIFACTS = path.join(REPO, 'target/e2e');
const DOCS = path.join(REPO, 'docs');
const UPDATE_SCREENSHOTS = process.env.SIGLIPD_UPDATE_SCREENSHOT === '1';
const STEP_MS = 20_000; // per step: the test box is slow and busy
const img = (name) => path.join(IMAGES, name);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const execFileP = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// siglipd processes

const running = new Set();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

function assertBinary() {
  if (!fs.existsSync(BIN)) {
    throw new Error(`siglipd binary not found at ${BIN}: build it first (cargo build) or set SIGLIPD_BIN`);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `siglipd <args(port)>` on a free port and waits until it logged "web page on http://"
 * and /healthz answers "ok". Returns { url, port, log(), stop() }.
 */
async function startSiglipd(argsFor, { name = 'siglipd', readyMs = STEP_MS } = {}) {
  assertBinary();
  const port = await freePort();
  const args = argsFor(port);
  const child = spawn(BIN, args, {
    cwd: REPO,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', RUST_LOG_STYLE: 'never' },
  });
  running.add(child);
  let log = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    log += d;
  });
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const srv = {
    url,
    port,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
  const deadline = Date.now() + readyMs;
  let last = 'no answer';
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${name} exited early (${child.exitCode ?? child.signalCode})`);
      }
      if (log.includes('web page on http://')) {
        try {
          const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
          const body = (await r.text()).trim();
          if (r.ok && body === 'ok') break;
          last = `HTTP ${r.status} ${body}`;
        } catch (e) {
          last = String(e);
        }
      }
      if (Date.now() > deadline) throw new Error(`${name} not ready after ${readyMs} ms (/healthz: ${last})`);
      await sleep(100);
    }
  } catch (e) {
    await srv.stop();
    e.message += `\ncommand: ${BIN} ${args.join(' ')}\nstderr:\n${log}`;
    throw e;
  }
  return srv;
}

// ---------------------------------------------------------------------------------------------
// browser

let browserPromise = null;
function browser() {
  browserPromise ??= (async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM} (default /usr/bin/chromium): these browser tests need it (Debian: apt-get install chromium; ` +
          'or set SIGLIPD_CHROMIUM). They are never skipped.',
      );
    }
    try {
      return await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        timeout: STEP_MS,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
    } catch (e) {
      e.message = `cannot launch Chromium at ${CHROMIUM}: ${e.message}`;
      throw e;
    }
  })();
  return browserPromise;
}

after(async () => {
  if (browserPromise) {
    const b = await browserPromise.catch(() => null);
    await b?.close();
  }
});

/** A fresh context (own localStorage) on `url`, with page errors and /api/classify requests recorded. */
async function openPage(url, { beforeGoto } = {}) {
  const b = await browser();
  const context = await b.newContext({
    viewport: { width: 960, height: 800 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
    locale: 'en-US',
  });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = await context.newPage();
  const seen = { pageErrors: [], consoleErrors: [], failedResponses: [], classifyRequests: 0, requests: [] };
  page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
  page.on('console', (m) => {
    const where = m.location()?.url ?? '';
    if (m.type() === 'error') seen.consoleErrors.push(`${m.text()} [${where}]`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) seen.failedResponses.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  page.on('requestfailed', (r) => seen.failedResponses.push(`${r.failure()?.errorText} ${r.method()} ${r.url()}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    seen.requests.push(`${r.method()} ${u.pathname}`);
    if (u.pathname === '/api/classify') seen.classifyRequests++;
  });
  if (beforeGoto) await beforeGoto(page);
  const resp = await page.goto(`${url}/`);
  assert.equal(resp.status(), 200, 'GET / status');
  assert.match(resp.headers()['content-type'] ?? '', /^text\/html/, 'GET / content type');
  // /api/info has arrived (limits known to the page) once #model is filled in
  await page.waitForFunction(() => /^Model: ./.test(document.getElementById('model').textContent));
  return { page, context, seen };
}

/** Clicks #classify and waits until the page is idle again. Returns what the page shows. */
// after a refused upload, a small image with two labels is scored and the page has no errors
async function smallImageStillWorks(page, seen) {
  await page.setInputFiles('#file', img('chelsea.png'));
  const ok = await classify(page);
  assert.equal(ok.error, '');
  assert.equal(ok.scores.length, 2);
  assert.deepEqual(seen.pageErrors, []);
}

async function classify(page) {
  await page.click('#classify');
  // the submit handler either returned early (client error) or is in flight (button disabled)
  await page.waitForFunction(() => {
    const b = document.getElementById('classify');
    return !b.disabled && b.textContent === 'Classify' && !document.getElementById('results').hasAttribute('aria-busy');
  });
  return shown(page);
}

function shown(page) {
  return page.evaluate(() => {
    const err = document.getElementById('error');
    return {
      error: err.textContent,
      errorVisible: getComputedStyle(err).display !== 'none',
      status: document.getElementById('status').textContent,
      scores: [...document.querySelectorAll('ol#scores > li.score')].map((li) => ({
        label: li.dataset.label,
        score: li.dataset.score,
        text: li.querySelector('.lbl')?.textContent,
        width: li.querySelector('.bar > span')?.style.width,
        num: li.querySelector('.num')?.textContent,
      })),
    };
  });
}

async function waitUntil(cond, what, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function screenshot(page, file, docsName) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const out = path.join(ARTIFACTS, file);
  await page.screenshot({ path: out, fullPage: true, animations: 'disabled', caret: 'hide' });
  assert.ok(fs.statSync(out).size > 1_000, `screenshot ${out} written`);
  if (UPDATE_SCREENSHOTS) {
    fs.mkdirSync(DOCS, { recursive: true });
    fs.copyFileSync(out, path.join(DOCS, docsName));
  }
  return out;
}

/** POST /api/classify straight from node (multipart, like the page). */
async function postClassify(url, { image, imageName = 'upload.png', labels, template, precision }) {
  const fd = new FormData();
  if (image) fd.append('image', new Blob([image]), imageName);
  fd.append('labels', labels);
  if (template != null) fd.append('template', template);
  if (precision != null) fd.append('precision', precision);
  const r = await fetch(`${url}/api/classify`, { method: 'POST', body: fd, signal: AbortSignal.timeout(STEP_MS) });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, text, json };
}

/**
 * The same, with node's http module: for a body over the server's limit the server answers 413
 * and closes the connection before the upload is finished, which undici's fetch reports as
 * "fetch failed" (EPIPE) without the response. A browser, like this, still reads the answer.
 */
function postClassifyRaw(url, { image, imageName, labels }) {
  const b = `----siglipd-e2e-${Date.now()}`;
  const body = Buffer.concat([
    Buffer.from(
      `--${b}\r\nContent-Disposition: form-data; name="image"; filename="${imageName}"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    ),
    image,
    Buffer.from(`\r\n--${b}\r\nContent-Disposition: form-data; name="labels"\r\n\r\n${labels}\r\n--${b}--\r\n`),
  ]);
  return new Promise((resolve, reject) => {
    let writeError = null;
    const req = http.request(
      `${url}/api/classify`,
      {
        method: 'POST',
        headers: { 'content-type': `multipart/form-data; boundary=${b}`, 'content-length': body.length },
        timeout: STEP_MS,
      },
      (resp) => {
        let text = '';
        resp.setEncoding('utf8');
        resp.on('data', (d) => (text += d));
        resp.on('end', () => {
          let json = null;
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: resp.statusCode, text, json });
        });
        resp.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    // EPIPE/ECONNRESET while still sending: the response may already be on its way
    req.on('error', (e) => {
      writeError = e;
      setTimeout(() => reject(new Error(`no response, only ${writeError}`)), 2_000);
    });
    req.end(body);
  });
}

/** What `siglipd classify --json` says for one image (the reference for the page). */
async function cliScores(image, labels) {
  const { stdout } = await execFileP(BIN, ['classify', '--json', '--model', MODEL, '--labels', labels, image], {
    cwd: REPO,
    timeout: STEP_MS,
    env: { ...process.env, NO_COLOR: '1' },
  });
  const out = JSON.parse(stdout);
  assert.ok(Array.isArray(out) && out.length === 1 && Array.isArray(out[0].scores), `CLI output: ${stdout}`);
  return out[0].scores;
}

/** A valid 24-bit BMP of w×h pixels (a gradient): an image well over a small upload limit. */
function bmp(w, h) {
  const row = Math.ceil((w * 3) / 4) * 4;
  const size = 54 + row * h;
  const b = Buffer.alloc(size);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(size, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  b.writeUInt32LE(row * h, 34);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = 54 + y * row + x * 3;
      b[o] = (x * 255) / w;
      b[o + 1] = (y * 255) / h;
      b[o + 2] = ((x ^ y) & 0xff);
    }
  }
  return b;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'siglipd-e2e-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// One `siglipd serve` for tests a and b.
let servePromise = null;
function serveServer() {
  servePromise ??= startSiglipd((port) => ['serve', '--model', MODEL, '--bind', `127.0.0.1:${port}`], {
    name: 'siglipd serve',
  });
  return servePromise;
}
after(async () => {
  if (servePromise) await (await servePromise.catch(() => null))?.stop();
});

// ---------------------------------------------------------------------------------------------
// a. the happy path, checked against the CLI

test('classify chelsea.png in the page: same scores as `siglipd classify --json`', { timeout: 60_000 }, async () => {
  // a quoted label holds a comma: the page sends the text as typed and the server parses it as the CLI does
  const labels = 'cat, rocket, "a cup, of coffee"';
  const [srv, want] = await Promise.all([serveServer(), cliScores(img('chelsea.png'), labels)]);
  assert.equal(want.length, 3);
  const info = await (await fetch(`${srv.url}/api/info`)).json();

  const { page, context, seen } = await openPage(srv.url);
  try {
    assert.equal(await page.title(), 'siglipd — zero-shot labels');
    assert.equal(await page.textContent('#model'), `Model: ${info.model}`);
    // the precision select follows /api/info
    assert.deepEqual(
      await page.$$eval('#precision option', (os) => os.map((o) => o.value)),
      info.precisions,
    );
    assert.equal(await page.inputValue('#precision'), info.default_precision);
    assert.equal(await page.isVisible('#precrow'), info.precisions.length > 1);
    assert.equal(await page.inputValue('#template'), 'This is a photo of {}.');
    assert.equal(await page.isVisible('#error'), false, '#error hidden while empty');

    await page.setInputFiles('#file', img('chelsea.png'));
    // the preview shows the chosen file
    await page.waitForFunction(() => {
      const p = document.getElementById('preview');
      return !p.hidden && p.complete && p.naturalWidth > 0;
    });
    assert.ok(await page.isVisible('#preview'), 'preview visible');
    assert.match(await page.textContent('#fname'), /^chelsea\.png \(\d+ KB\)/);

    await page.fill('#labels', labels);
    const [req] = await Promise.all([
      page.waitForRequest((r) => new URL(r.url()).pathname === '/api/classify'),
      page.click('#classify'),
    ]);
    assert.equal(req.method(), 'POST');
    assert.match(req.headers()['content-type'] ?? '', /^multipart\/form-data; boundary=/);
    await page.waitForSelector('ol#scores > li.score');
    await page.waitForFunction(() => !document.getElementById('classify').disabled);
    const got = await shown(page);

    assert.equal(got.error, '');
    assert.equal(got.errorVisible, false);
    assert.deepEqual(
      got.scores.map((s) => s.label),
      want.map((s) => s.label),
      'labels in the CLI order',
    );
    got.scores.forEach((s, i) => {
      const v = parseFloat(s.score);
      assert.ok(Number.isFinite(v), `data-score ${s.score}`);
      assert.ok(Math.abs(v - want[i].score) <= 1e-6, `${s.label}: page ${s.score} vs CLI ${want[i].score}`);
      assert.equal(s.text, s.label);
      // bar width is score × 100 %; the number reads 0.xxxx (yy.y%)
      assert.ok(Math.abs(parseFloat(s.width) - v * 100) < 1e-3, `${s.label} bar width ${s.width}`);
      assert.equal(s.num, `${v.toFixed(4)} (${(v * 100).toFixed(1)}%)`);
    });
    for (let i = 1; i < got.scores.length; i++) {
      assert.ok(parseFloat(got.scores[i - 1].score) >= parseFloat(got.scores[i].score), 'scores sorted high to low');
      assert.ok(parseFloat(got.scores[i - 1].width) >= parseFloat(got.scores[i].width), 'bars sorted high to low');
    }
    assert.equal(got.status, `Top label: ${want[0].label}`);
    assert.ok(got.status.includes(want[0].label));
    const ms = await page.getAttribute('#elapsed', 'data-ms');
    assert.match(ms ?? '', /^\d+$/);
    assert.equal(await page.textContent('#elapsed'), `Elapsed: ${ms} ms`);
    assert.equal(await page.textContent('#classify'), 'Classify');
    assert.equal(await page.isHidden('#tokenform'), true);
    // no cameras on `serve`: the live view stays hidden
    assert.equal(await page.isHidden('#live'), true);

    await screenshot(page, 'demo-page.png', 'screenshot-demo.png');
    assert.deepEqual(seen.pageErrors, [], 'no uncaught errors in the page');
    assert.deepEqual(seen.consoleErrors, [], `no console errors on the happy path (failed: ${seen.failedResponses})`);
    assert.equal(seen.classifyRequests, 1);
  } finally {
    await context.close();
  }
});

// ---------------------------------------------------------------------------------------------
// b. bad input: a clear message in #error, and the server keeps serving

test('bad input shows a clear error and the server keeps serving', { timeout: 60_000 }, async () => {
  const srv = await serveServer();
  const { page, context, seen } = await openPage(srv.url);
  try {
    const expectError = async (what, check, { request = true } = {}) => {
      const n = seen.classifyRequests;
      const got = await classify(page);
      assert.ok(got.error.trim().length > 0, `${what}: #error is empty (status: ${got.status})`);
      assert.equal(got.errorVisible, true, `${what}: #error visible`);
      // a request and a client-side refusal both clear the previous results
      assert.deepEqual(got.scores, [], `${what}: no scores`);
      if (typeof check === 'string') assert.equal(got.error, check, what);
      else assert.match(got.error, check, what);
      assert.equal(seen.classifyRequests - n, request ? 1 : 0, `${what}: requests sent`);
      assert.equal(got.status, 'No results.', `${what}: status`);
      return got.error;
    };
    const expectOk = async (what) => {
      const got = await classify(page);
      assert.equal(got.error, '', `${what}: no error`);
      assert.equal(got.errorVisible, false);
      assert.deepEqual(got.scores.map((s) => s.label).sort(), ['cat', 'rocket'], `${what}: one score per label`);
      assert.match(got.status, /^Top label: (cat|rocket)$/);
    };

    // Have playwright intercept file choosers from the start: switching interception on is an
    // asynchronous browser command, and a key press racing it opens a real (invisible) dialog.
    const choosers = [];
    page.on('filechooser', (c) => choosers.push(c));
    await page.fill('#labels', 'cat, rocket');

    // nothing chosen yet
    await expectError('no file', 'choose an image first', { request: false });

    // a text file named .jpg: the browser calls it image/jpeg, the server refuses it
    const notImage = await postClassify(srv.url, {
      image: fs.readFileSync(img('not_an_image.jpg')),
      imageName: 'not_an_image.jpg',
      labels: 'cat',
    });
    assert.equal(notImage.status, 400, notImage.text);
    assert.match(notImage.json?.error ?? '', /not a supported image/);
    await page.setInputFiles('#file', img('not_an_image.jpg'));
    await expectError('not_an_image.jpg', notImage.json.error);

    // the error is cleared on the next submit, and a good request works
    await page.setInputFiles('#file', img('chelsea.png'));
    await expectOk('after not_an_image.jpg');

    // truncated JPEG
    await page.setInputFiles('#file', img('truncated.jpg'));
    await expectError('truncated.jpg', /^cannot decode the uploaded image/);

    // 0-byte file
    await page.setInputFiles('#file', img('empty.png'));
    await expectError('empty.png', 'no image uploaded');

    // a file the browser knows is not an image: refused when chosen, nothing sent
    await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello\n') });
    assert.equal(await page.textContent('#error'), 'that file is not an image');
    assert.equal(await page.isVisible('#error'), true);

    await page.setInputFiles('#file', img('rocket.jpg'));
    assert.equal(await page.textContent('#error'), '', 'choosing an image clears the error');
    await expectOk('after the bad files');

    // labels: none / too many (client-side; nothing sent)
    await page.fill('#labels', '');
    await expectError('empty labels', 'enter at least one label', { request: false });
    await page.fill('#labels', ' ,  , ');
    await expectError('blank labels', 'enter at least one label', { request: false });
    const many = Array.from({ length: 1000 }, (_, i) => `label ${i}`).join(', ');
    await page.fill('#labels', many);
    await expectError('1000 labels', 'too many labels: 1000 (at most 100)', { request: false });

    // ... and the server's own check of the same
    const tooMany = await postClassify(srv.url, {
      image: fs.readFileSync(img('chelsea.png')),
      imageName: 'chelsea.png',
      labels: many,
    });
    assert.equal(tooMany.status, 400, tooMany.text);
    assert.equal(tooMany.json?.error, 'too many labels: 1000 (at most 100)', 'the page and the server word it alike');

    // Enter in the labels box submits
    await page.fill('#labels', 'cat, rocket');
    const n = seen.classifyRequests;
    const [enterResp] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/api/classify'),
      page.press('#labels', 'Enter'),
    ]);
    assert.equal(enterResp.status(), 200);
    await page.waitForFunction(() => !document.getElementById('classify').disabled);
    assert.equal(seen.classifyRequests, n + 1, 'Enter in #labels submits');
    const afterEnter = await shown(page);
    assert.equal(afterEnter.error, '');
    assert.deepEqual(afterEnter.scores.map((s) => s.label).sort(), ['cat', 'rocket']);

    // keyboard: the drop zone is focusable, in tab order after the file input, and opens the picker
    assert.equal(await page.getAttribute('#drop', 'tabindex'), '0');
    assert.equal(await page.getAttribute('#drop', 'role'), 'button');
    await page.focus('#file');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'drop', 'Tab from #file reaches #drop');
    for (const key of ['Enter', ' ']) {
      const n = choosers.length;
      await page.keyboard.press(key);
      await page.waitForFunction(() => document.activeElement?.id === 'drop');
      await waitUntil(() => choosers.length > n, `a file chooser after pressing ${JSON.stringify(key)} on #drop`);
      const chooser = choosers[n];
      assert.equal(chooser.isMultiple(), false);
      if (key === 'Enter') await chooser.setFiles(img('coffee.png'));
    }
    await page.waitForFunction(() => document.getElementById('fname').textContent.startsWith('coffee.png'));
    await expectOk('file chosen with the keyboard');

    // the server is still fine
    const health = await fetch(`${srv.url}/healthz`);
    assert.equal((await health.text()).trim(), 'ok');
    assert.deepEqual(seen.pageErrors, [], 'no uncaught errors in the page');
  } finally {
    await context.close();
  }
});

test('oversize upload: the page refuses it, and the server answers 413', { timeout: 60_000 }, async () => {
  const srv = await startSiglipd(
    (port) => ['serve', '--model', MODEL, '--bind', `127.0.0.1:${port}`, '--max-upload-mib', '1'],
    { name: 'siglipd serve --max-upload-mib 1' },
  );
  try {
    const info = await (await fetch(`${srv.url}/api/info`)).json();
    assert.equal(info.max_upload_bytes, 1024 * 1024);
    const big = path.join(tmp, 'big.bmp');
    fs.writeFileSync(big, bmp(700, 600)); // 1.26 MB, over the limit and its 64 KiB multipart slack
    const bigSize = fs.statSync(big).size;
    const justOver = bmp(600, 600); // 1.08 MB: over the image limit, within the body limit

    // the server, directly: both limits answer 413 with a message
    const overBody = await postClassifyRaw(srv.url, { image: fs.readFileSync(big), imageName: 'big.bmp', labels: 'cat' });
    assert.equal(overBody.status, 413, overBody.text);
    assert.equal(overBody.json?.error, 'upload too large');
    const overImage = await postClassify(srv.url, { image: justOver, imageName: 'big.bmp', labels: 'cat' });
    assert.equal(overImage.status, 413, overImage.text);
    assert.equal(overImage.json?.error, `image is ${justOver.length} bytes, over the limit of 1048576`);

    // the page knows the limit from /api/info and says so as soon as the file is chosen
    {
      const { page, context, seen } = await openPage(srv.url);
      try {
        await page.fill('#labels', 'cat, rocket');
        await page.setInputFiles('#file', big);
        const msg = `image is too large: ${(bigSize / 1048576).toFixed(1)} MB (at most 1.0 MB)`;
        assert.equal(msg, 'image is too large: 1.2 MB (at most 1.0 MB)');
        await page.waitForFunction((m) => document.getElementById('error').textContent === m, msg);
        assert.equal(await page.isVisible('#error'), true);
        const got = await classify(page);
        assert.equal(got.error, msg);
        assert.equal(seen.classifyRequests, 0, 'nothing sent');
        await smallImageStillWorks(page, seen);
      } finally {
        await context.close();
      }
    }

    // without the limit in /api/info (an older server, say) the upload is sent: the page must
    // show the server's 413 message, not a network error
    {
      const { page, context, seen } = await openPage(srv.url, {
        beforeGoto: (p) =>
          p.route('**/api/info', async (route) => {
            const resp = await route.fetch();
            const j = await resp.json();
            delete j.max_upload_bytes;
            await route.fulfill({ response: resp, json: j });
          }),
      });
      try {
        await page.fill('#labels', 'cat, rocket');
        await page.setInputFiles('#file', big);
        assert.equal(await page.textContent('#error'), '');
        const got = await classify(page);
        assert.equal(seen.classifyRequests, 1);
        assert.deepEqual(got.scores, []);
        assert.doesNotMatch(got.error, /network error/, 'a 413 reaches the page as a response');
        assert.equal(got.error, overBody.json.error, "the server's message");
        assert.equal(got.status, 'No results.');
        await smallImageStillWorks(page, seen);
      } finally {
        await context.close();
      }
    }
    assert.equal((await (await fetch(`${srv.url}/healthz`)).text()).trim(), 'ok');
  } finally {
    await srv.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// c. live view of `siglipd run`

test('live view of `siglipd run` shows the camera, its frame and its scores', { timeout: 60_000 }, async () => {
  const frames = path.join(tmp, 'frames');
  fs.mkdirSync(frames, { recursive: true });
  for (const f of ['chelsea.png', 'coffee.png', 'rocket.jpg']) fs.copyFileSync(img(f), path.join(frames, f));
  const config = path.join(tmp, 'live.toml');
  const srv = await startSiglipd(
    (port) => {
      fs.writeFileSync(
        config,
        [
          '[model]',
          `bundle = ${JSON.stringify(MODEL)}`,
          `embeddings = ${JSON.stringify(path.join(tmp, 'emb.json'))}`,
          '[output]',
          'stdout = false',
          '[state]',
          `dir = ${JSON.stringify(path.join(tmp, 'state'))}`,
          '[http]',
          `bind = "127.0.0.1:${port}"`,
          '[[camera]]',
          'id = "porch"',
          'name = "Porch"',
          `source = { kind = "files", path = ${JSON.stringify(path.join(frames, '*'))}, loop = true }`,
          'interval_s = 0.3',
          '[[camera.label]]',
          'name = "cat"',
          'score = "calibrated"',
          'on = 0.5',
          'off = 0.4',
          '[[camera.label]]',
          'name = "rocket"',
          '',
        ].join('\n'),
      );
      return ['run', '--config', config];
    },
    { name: 'siglipd run' },
  );
  try {
    const { page, context, seen } = await openPage(srv.url);
    try {
      const card = page.locator('#cams > article.cam[data-id="porch"][data-online="true"]');
      await card.waitFor({ state: 'visible' });
      assert.equal(await page.isVisible('#live'), true);
      assert.equal(await page.locator('#cams > article.cam').count(), 1);
      await page.waitForFunction(() => {
        const c = document.querySelector('article.cam[data-id="porch"]');
        const i = c?.querySelector('img.frame');
        return i && !i.hidden && i.complete && i.naturalWidth > 0 && c.querySelectorAll('ul.top > li[data-label]').length > 0;
      });
      assert.equal(await card.locator('.name').textContent(), 'Porch');
      assert.equal(await card.locator('.badge').textContent(), 'online');
      assert.equal(await card.locator('.badge.online').count(), 1);
      const src = await card.locator('img.frame').getAttribute('data-src');
      assert.match(src ?? '', /^\/api\/cameras\/porch\/frame\.jpg\?t=/);
      assert.equal(await card.locator('img.frame').getAttribute('alt'), 'Latest frame from Porch');

      const top = await card.locator('ul.top > li[data-label]').evaluateAll((lis) =>
        lis.map((li) => ({ label: li.dataset.label, score: li.dataset.score, text: li.textContent })),
      );
      const chips = await card.locator('ul.chips > li.chip').evaluateAll((lis) =>
        lis.map((li) => ({ label: li.dataset.label, on: li.dataset.on, cls: li.className, text: li.textContent })),
      );
      const state = await (await fetch(`${srv.url}/api/cameras/porch/state`)).json();
      assert.equal(state.id, 'porch');
      assert.equal(state.online, true);
      const names = state.labels.map((l) => l.name);
      assert.deepEqual(names, ['cat', 'rocket']);
      assert.ok(Array.isArray(state.state?.top) && state.state.top.length > 0, JSON.stringify(state));
      // the state moves on every 0.3 s, so compare loosely: the same label names
      assert.ok(names.includes(state.state.top[0].label));
      for (const t of top) {
        assert.ok(names.includes(t.label), `top label ${t.label} is configured`);
        const v = parseFloat(t.score);
        assert.ok(Number.isFinite(v) && v >= 0 && v <= 1, `top score ${t.score}`);
        assert.ok(t.text.startsWith(`${t.label} ${v.toFixed(4)}`), t.text);
      }
      for (let i = 1; i < top.length; i++) assert.ok(parseFloat(top[i - 1].score) >= parseFloat(top[i].score));
      assert.deepEqual(chips.map((c) => c.label), names, 'one chip per configured label');
      for (const c of chips) {
        assert.ok(['true', 'false'].includes(c.on));
        assert.equal(c.cls, `chip ${c.on === 'true' ? 'on' : 'off'}`);
        assert.equal(c.text, `${c.label} ${c.on === 'true' ? 'ON' : 'OFF'}`);
      }
      assert.match(await card.locator('.ms').textContent(), /^infer \d+ ms( · .*)?$/);

      // the frame is a real JPEG
      const frame = await fetch(`${srv.url}${src}`);
      assert.equal(frame.status, 200);
      assert.equal(frame.headers.get('content-type'), 'image/jpeg');
      const bytes = Buffer.from(await frame.arrayBuffer());
      assert.deepEqual([...bytes.subarray(0, 2)], [0xff, 0xd8]);

      // the score history chart: open it, pick "rocket", see the points the API has, with the
      // on/off threshold lines and the label's name for screen readers
      await card.locator('details.hist > summary').click();
      await card.locator('details.hist select').selectOption('rocket');
      await page.waitForFunction(() => {
        // the chart of the label just picked: until it is drawn, the previous label's is shown
        const s = document.querySelector('article.cam[data-id="porch"] svg.chart');
        return s && (s.getAttribute('aria-label') ?? '').startsWith('rocket:') && Number(s.dataset.points) >= 2
          && s.querySelectorAll('polyline.sm').length === 1;
      });
      const chart = card.locator('svg.chart');
      assert.equal(await chart.locator('line.thr').count(), 2, 'on and off threshold lines');
      assert.match((await chart.getAttribute('aria-label')) ?? '', /^rocket: \d+ points, last score 0\.\d{4}/);
      const api = await (await fetch(`${srv.url}/api/cameras/porch/history?label=rocket`)).json();
      assert.equal(api.label, 'rocket');
      assert.ok(api.points.length >= Number(await chart.getAttribute('data-points')), 'the chart shows what the API has');
      assert.ok(Math.abs(api.on - 0.5) < 1e-6 && Math.abs(api.off - 0.4) < 1e-6, JSON.stringify(api));

      // teaching by example: mark frames, see the count rise and a suggestion appear, apply it
      const sug = card.locator('details.hist p.sug');
      await page.waitForFunction(() => document.querySelector('article.cam[data-id="porch"] details.hist button.mark')?.textContent === 'This is rocket');
      for (const [i, which] of ['true', 'true', 'true', 'false', 'false', 'false'].entries()) {
        await card.locator(`details.hist button.mark[data-positive="${which}"]`).click();
        const yes = which === 'true' ? i + 1 : 3;
        const no = which === 'true' ? 0 : i - 2;
        await page.waitForFunction(
          (want) => document.querySelector('article.cam[data-id="porch"] details.hist p.sug')?.textContent.startsWith(want),
          `${yes} marked yes, ${no} no.`,
        );
        await page.waitForTimeout(350); // the next frame
      }
      const text = await sug.textContent();
      assert.ok(/Suggested on 0\.\d{3}|No threshold reaches/.test(text), text);
      const examples = await (await fetch(`${srv.url}/api/cameras/porch/examples?label=rocket`)).json();
      assert.equal(examples.length, 6);
      // the examples are listed under the chart with their stored images
      await page.waitForFunction(() => document.querySelectorAll('article.cam[data-id="porch"] ul.exs li:not(.dl)').length === 6);
      await page.waitForFunction(() => [...document.querySelectorAll('article.cam[data-id="porch"] ul.exs img')].every((i) => i.complete && i.naturalWidth > 0));
      assert.equal(await card.locator('ul.exs li.yes').count(), 3);
      assert.match(await card.locator('p.kind').textContent(), /^Thresholds apply to the zero-shot score\.$/);
      if (await card.locator('details.hist button.apply').isVisible()) {
        const want = Number(await card.locator('details.hist button.apply').getAttribute('data-on'));
        await card.locator('details.hist button.apply').click();
        await page.waitForFunction(() => document.querySelector('article.cam[data-id="porch"] details.hist p.sug')?.textContent.startsWith('Applied'));
        const h = await (await fetch(`${srv.url}/api/cameras/porch/history?label=rocket`)).json();
        assert.ok(Math.abs(h.on - want) < 1e-3, `applied ${want}, in force ${h.on}`);
      }

      // the page keeps polling and the frame follows the state
      const firstSrc = src;
      await page.waitForFunction(
        (s) => document.querySelector('article.cam[data-id="porch"] img.frame')?.dataset.src !== s,
        firstSrc,
      );

      // delete an example on the page: the count falls, and with 2 "no" nothing is suggested
      await card.locator('ul.exs li.no button').first().click();
      await page.waitForFunction(() => document.querySelectorAll('article.cam[data-id="porch"] ul.exs li:not(.dl)').length === 5);
      await page.waitForFunction(() => document.querySelector('article.cam[data-id="porch"] details.hist p.sug')?.textContent.startsWith('3 marked yes, 2 no. Mark at least 3'));

      // teach "cat" (score = "calibrated") with the upload form: three cat images, three others
      // (not coffee.png: for the tiny random model it embeds like the cat, cosine 0.986)
      await card.locator('details.hist select').selectOption('cat');
      await page.waitForFunction(() => document.querySelector('article.cam[data-id="porch"] p.kind')?.textContent.includes('zero-shot score until 3 yes and 3 no'));
      await page.waitForFunction(() => !document.getElementById('teachup').hidden);
      await page.selectOption('#tucam', 'porch');
      await page.selectOption('#tulab', 'cat');
      const marks = [['chelsea.png', true], ['chelsea.bmp', true], ['rgb16.png', true], ['rocket.jpg', false], ['astronaut.png', false], ['camera_gray.png', false]];
      for (const [i, [img, yes]] of marks.entries()) {
        await page.setInputFiles('#file', path.join(IMAGES, img));
        await page.click(yes ? '#tuyes' : '#tuno');
        const want = `Added as ${yes ? '' : 'not '}cat: ${Math.min(i + 1, 3)} yes, ${Math.max(0, i - 2)} no`;
        await page.waitForFunction((w) => document.getElementById('tumsg').textContent.startsWith(w), want);
      }
      assert.match(await page.locator('#tumsg').textContent(), /the label has a fitted model\.$/);
      await page.waitForFunction(() => document.querySelectorAll('article.cam[data-id="porch"] ul.exs li:not(.dl)').length === 6);
      await page.waitForFunction(() => document.querySelector('article.cam[data-id="porch"] p.kind')?.textContent === 'Thresholds apply to the score fitted on the examples.');
      // the state now carries both scores, and "cat" is decided on the fitted one
      await page.waitForFunction(async (u) => {
        const c = (await (await fetch(u)).json()).state;
        return c && typeof c.calibrated?.cat === 'number' && typeof c.raw?.cat === 'number' && c.scores.cat === c.calibrated.cat;
      }, `${srv.url}/api/cameras/porch/state`);
      // a threshold on the fitted score that reaches 0.9 precision on the examples, applied
      await page.waitForFunction(() => /Suggested on 0\.\d{3}/.test(document.querySelector('article.cam[data-id="porch"] details.hist p.sug')?.textContent ?? ''));
      const want = Number(await card.locator('details.hist button.apply').getAttribute('data-on'));
      await card.locator('details.hist button.apply').click();
      await page.waitForFunction(() => document.querySelector('article.cam[data-id="porch"] details.hist p.sug')?.textContent.startsWith('Applied'));
      const applied = await (await fetch(`${srv.url}/api/cameras/porch/history?label=cat`)).json();
      assert.ok(Math.abs(applied.on - want) < 1e-3, `applied ${want}, in force ${applied.on}`);
      await page.waitForFunction(() => document.querySelectorAll('article.cam[data-id="porch"] svg.chart line.thr').length === 2);

      // the frame changes every poll (2 s): take the picture right after one has loaded, with a
      // viewport tall enough that nothing has to be stitched together
      const frameLoaded = () =>
        page.waitForFunction(() => {
          const i = document.querySelector('article.cam[data-id="porch"] img.frame');
          return i && !i.hidden && i.complete && i.naturalWidth > 0 && i.getAttribute('src') === i.dataset.src;
        });
      await page.setViewportSize({ width: 960, height: 1400 });
      await frameLoaded();
      const height = await page.evaluate(() => Math.ceil(document.querySelector('main').getBoundingClientRect().bottom));
      await page.setViewportSize({ width: 960, height: Math.max(800, Math.min(1400, height + 16)) });
      await frameLoaded();
      await screenshot(page, 'live-view.png', 'screenshot-live.png');
      assert.deepEqual(seen.pageErrors, []);
      assert.deepEqual(seen.consoleErrors, [], `no console errors in the live view (failed: ${seen.failedResponses})`);
    } finally {
      await context.close();
    }
  } finally {
    const { code, signal } = await srv.stop();
    assert.ok(code === 0 || signal === 'SIGTERM', `siglipd run stopped cleanly (code ${code}, signal ${signal})`);
  }
});
