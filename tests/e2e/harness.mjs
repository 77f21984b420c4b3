// What the page tests and the page benchmark share: a static server for dist/ and Chromium's flags.
import { createServer } from 'node:http';
import { readFile, stat, mkdtemp } from 'node:fs/promises';
import { join, extname, resolve, normalize } from 'node:path';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

export const root = resolve(new URL('../..', import.meta.url).pathname);
// SCALPEL_DIST: another built folder (the page benchmark's release build).
export const dist = resolve(root, process.env.SCALPEL_DIST ?? 'dist');
export const artifacts = join(root, 'tests', 'artifacts');
const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.gguf': 'application/octet-stream', '.json': 'application/json',
};

// A minimal static server on loopback (a fresh port), serving dist/ (`cargo xtask dist --dev`)
// only; the paths in `without` answer 404, as on a host the folder was copied to without them;
// `cors` lets any origin read the files (as the Hugging Face hub's file servers do).
export function serve({ without = [], cors = false } = {}) {
  const hidden = without.map((p) => join(dist, p));
  const server = createServer(async (req, res) => {
    try {
      const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
      let file = join(dist, path);
      if (!file.startsWith(dist) || hidden.includes(file)) throw new Error('not served');
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, {
        'Content-Type': MIME[extname(file)] ?? 'application/octet-stream', 'Content-Length': body.length,
        ...(cors ? { 'Access-Control-Allow-Origin': '*' } : {}),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

export const BASE_FLAGS = ['--remote-debugging-pipe', '--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-gpu-sandbox'];

// Headless Chromium with a fresh profile, as the page tools (not e2e.mjs's scenarios) open it.
export async function launchHeadless() {
  const profile = await mkdtemp(join(tmpdir(), 'scalpel-page-'));
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, ignoreDefaultArgs: true, args: [...BASE_FLAGS, `--user-data-dir=${profile}`] });
}

// A page of `server` (`query` added to its address) with the default model loaded and the tour
// skipped; a load that fails throws the page's error.
export async function openWithDefaultModel(browser, server, query = '') {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(`http://127.0.0.1:${server.address().port}/${query}`);
  await page.waitForFunction(() => document.querySelector('[data-testid=error]') || document.querySelector('[data-testid=model-name]')?.textContent.includes('SmolLM2'), null, { timeout: 300_000 });
  if (await page.getByTestId('error').count()) throw new Error(await page.getByTestId('error').innerText());
  if (await page.getByTestId('tour-skip').count()) await page.getByTestId('tour-skip').click();
  return page;
}

// The page's long jobs: the button that starts each, the element that reports it and the text
// that says it finished, and the estimate shown beside the button.
export const PAGE_JOBS = {
  compress: { button: 'compute-scores', status: 'scores-status', done: 'drag the slider', estimate: 'compress-estimate' },
  circuits: { button: 'find-circuit', status: 'circuit-status', done: 'curve measured', estimate: 'circuit-estimate' },
  correct: { button: 'find-correction', status: 'correct-status', done: 'every dose measured', estimate: 'correct-estimate' },
};
