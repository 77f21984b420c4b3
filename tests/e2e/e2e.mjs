// End-to-end tests of the built page (dist/, from `trunk build`) in Debian's headless Chromium.
// Run through `cargo xtask e2e` (or `cargo xtask test`). Screenshots go to tests/artifacts/.
//
// Scenarios:
//  1. WebGPU (SwiftShader adapter): the default model loads, the device badge names the GPU
//     adapter, greedy generation of "The capital of France is" streams " Paris".
//  2. No WebGPU (Chromium without --enable-unsafe-webgpu): the page falls back to the CPU, says why,
//     and generates the same text.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile, mkdir, mkdtemp, stat } from 'node:fs/promises';
import { join, extname, resolve, normalize } from 'node:path';
import { tmpdir } from 'node:os';

const root = resolve(new URL('../..', import.meta.url).pathname);
const dist = join(root, 'dist');
const artifacts = join(root, 'tests', 'artifacts');
const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.gguf': 'application/octet-stream', '.json': 'application/json',
};

// A minimal static server on loopback (a fresh port), serving dist/ only.
function serve() {
  const server = createServer(async (req, res) => {
    try {
      const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
      let file = join(dist, path);
      if (!file.startsWith(dist)) throw new Error('outside dist');
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, { 'Content-Type': MIME[extname(file)] ?? 'application/octet-stream', 'Content-Length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const BASE_FLAGS = ['--remote-debugging-pipe', '--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-gpu-sandbox'];

async function scenario(name, { webgpu, expectGpu }, baseUrl) {
  const profile = await mkdtemp(join(tmpdir(), 'scalpel-e2e-'));
  const args = [...BASE_FLAGS, `--user-data-dir=${profile}`, ...(webgpu ? ['--enable-unsafe-webgpu'] : [])];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, ignoreDefaultArgs: true, args });
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const started = Date.now();
  try {
    await page.goto(baseUrl);
    const modelName = page.getByTestId('model-name');
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-testid=model-name]');
      const err = document.querySelector('[data-testid=error]');
      return err || (el && el.textContent !== 'no model loaded');
    }, null, { timeout: 300_000 });
    const error = await page.getByTestId('error').count() ? await page.getByTestId('error').innerText() : null;
    if (error) throw new Error(`load failed: ${error}`);
    const device = await page.getByTestId('device').innerText();
    console.log(`${name}: loaded "${await modelName.innerText()}" on "${device}" in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (expectGpu && !device.startsWith('WebGPU')) throw new Error(`expected a WebGPU device, got "${device}"`);
    if (!expectGpu && !device.startsWith('CPU (no GPU')) throw new Error(`expected the CPU fallback with a reason, got "${device}"`);

    await page.getByTestId('max-tokens').fill('6');
    await page.getByTestId('generate').click();
    await page.waitForFunction(() => {
      const s = document.querySelector('[data-testid=stats]');
      const err = document.querySelector('[data-testid=error]');
      return err || (s && s.textContent.length > 0);
    }, null, { timeout: 600_000 });
    const genError = await page.getByTestId('error').count() ? await page.getByTestId('error').innerText() : null;
    if (genError) throw new Error(`generation failed: ${genError}`);
    const output = await page.locator('[data-testid=output] .generated').innerText();
    const stats = await page.getByTestId('stats').innerText();
    console.log(`${name}: generated ${JSON.stringify(output)} (${stats})`);
    if (!output.startsWith(' Paris')) throw new Error(`expected the continuation to start with " Paris", got ${JSON.stringify(output)}`);
    if (!/tokens\/s/.test(stats)) throw new Error(`no tokens/s in stats: ${stats}`);
    await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
    return true;
  } catch (e) {
    await page.screenshot({ path: join(artifacts, `${name}-failure.png`), fullPage: true }).catch(() => {});
    console.error(`${name}: FAILED: ${e.message}\n--- browser console ---\n${logs.slice(-40).join('\n')}`);
    return false;
  } finally {
    await browser.close();
  }
}

await mkdir(artifacts, { recursive: true });
const server = await serve();
const baseUrl = `http://127.0.0.1:${server.address().port}/`;
const results = [];
results.push(await scenario('webgpu', { webgpu: true, expectGpu: true }, baseUrl));
results.push(await scenario('cpu-fallback', { webgpu: false, expectGpu: false }, baseUrl));
server.close();
const passed = results.filter(Boolean).length;
console.log(`e2e: ${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
