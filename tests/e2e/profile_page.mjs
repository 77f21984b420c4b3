// Tool (not a test): where the page's compute worker spends a job on the CPU fallback.
// Loads the default model in headless Chromium, runs JOB under DevTools' sampling profiler
// attached to the worker, and prints the functions with the most self time (wasm functions by
// name: use the dev build, whose module keeps its name section). JOB is `generate` (the default:
// MAX_TOKENS, default 32, greedy tokens), or `compress`, `circuits` or `correct` (each panel's
// long job with its defaults). QUERY is added to the page's address
// (e.g. `?dtype=f16` for f16 weights).
// Writes the whole profile to PROFILE_OUT (default /tmp/worker.cpuprofile; DevTools opens it).
// Needs a built dist/ (`cargo xtask dist --dev`; SCALPEL_DIST for another folder).
import { writeFile } from 'node:fs/promises';
import { serve, launchHeadless, openWithDefaultModel, PAGE_JOBS } from './harness.mjs';

const server = await serve();
const browser = await launchHeadless();
try {
  const page = await openWithDefaultModel(browser, server, process.env.QUERY ?? '');
  // Playwright has no CDP session for a dedicated worker: attach through the browser's session
  // (non-flat) and talk to the worker's target by messages.
  const cdp = await browser.newBrowserCDPSession();
  const { targetInfos } = await cdp.send('Target.getTargets');
  const worker = targetInfos.find((t) => t.type === 'worker');
  if (!worker) throw new Error('no worker target');
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: worker.targetId, flatten: false });
  let nextId = 1;
  const pending = new Map();
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    const message = JSON.parse(e.message);
    if (message.id && pending.has(message.id)) {
      pending.get(message.id)(message);
      pending.delete(message.id);
    }
  });
  const send = (method, params = {}) => new Promise((ok) => {
    const id = nextId++;
    pending.set(id, ok);
    cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
  });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 500 });
  const jobs = { generate: { button: 'generate', status: 'stats', done: 'stop' }, ...PAGE_JOBS };
  const job = process.env.JOB ?? 'generate';
  if (!jobs[job]) throw new Error(`JOB is one of ${Object.keys(jobs).join(', ')}, not ${job}`);
  const { button, status, done } = jobs[job];
  await page.getByTestId('max-tokens').fill(process.env.MAX_TOKENS ?? '32');
  await send('Profiler.start');
  const started = Date.now();
  await page.getByTestId(button).click();
  await page.waitForFunction(([id, text]) => document.querySelector('[data-testid=error]') || document.querySelector(`[data-testid=${id}]`)?.textContent.includes(text), [status, done], { timeout: 1_800_000 });
  const { result } = await send('Profiler.stop');
  if (await page.getByTestId('error').count()) throw new Error(await page.getByTestId('error').innerText());
  console.log(`${job} (${((Date.now() - started) / 1000).toFixed(1)} s): ${await page.getByTestId(status).innerText()}`);
  const out = process.env.PROFILE_OUT ?? '/tmp/worker.cpuprofile';
  await writeFile(out, JSON.stringify(result.profile));
  const names = new Map(result.profile.nodes.map((n) => [n.id, n.callFrame.functionName || '(anonymous)']));
  const self = new Map();
  for (const id of result.profile.samples) self.set(names.get(id), (self.get(names.get(id)) ?? 0) + 1);
  const total = result.profile.samples.length;
  console.log(`self time of the worker's ${total} samples (whole profile in ${out}):`);
  for (const [name, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 15))) {
    console.log(`${(100 * n / total).toFixed(1).padStart(5)} %  ${name.slice(0, 140)}`);
  }
} finally {
  await browser.close();
  server.close();
}
