// Benchmark (not a test): how long the page's default long jobs take on its CPU fallback, as a new
// user meets them, beside the time the page estimated before each started (web/src/estimate.rs,
// priced by the default generation's speed, which runs first). Needs a built dist/ (`cargo xtask
// dist --dev`, or the release build); `cargo xtask bench page` builds one and runs this. Prints
// the protocol and one JSON line.
//  - Compress: "Compute scores" with the panel's defaults (method, reference set, sizes);
//  - Circuits: "Find circuit" with the panel's defaults (task, granularity, method, prompts);
//  - Correct: "Find & measure corrections" with the panel's defaults.
// Each is timed from the click until the panel reports it finished. PAGE_BENCH_ONLY=compress,
// circuits or correct runs one of them.
import { serve, launchHeadless, openWithDefaultModel, PAGE_JOBS } from './harness.mjs';

const JOB_TIMEOUT = 1_800_000;

async function timed(page, { button, status: statusId, done, estimate: estimateId }) {
  const estimate = await page.getByTestId(estimateId).count() ? await page.getByTestId(estimateId).innerText() : 'none (under a minute)';
  const started = Date.now();
  await page.getByTestId(button).click();
  await page.waitForFunction(([id, text]) => {
    const s = document.querySelector(`[data-testid=${id}]`);
    return document.querySelector('[data-testid=error]') || (s && s.textContent.includes(text));
  }, [statusId, done], { timeout: JOB_TIMEOUT });
  if (await page.getByTestId('error').count()) throw new Error(`${button}: ${await page.getByTestId('error').innerText()}`);
  return { seconds: (Date.now() - started) / 1000, estimate, status: await page.getByTestId(statusId).innerText() };
}

const server = await serve();
const browser = await launchHeadless();
try {
  const page = await openWithDefaultModel(browser, server);
  const device = (await page.getByTestId('device').innerText()).split('\n')[0];
  const defaults = async (ids) => Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await page.getByTestId(id).inputValue()])));
  const compressDefaults = await defaults(['compress-method', 'samples', 'sample-len']);
  const circuitDefaults = await defaults(['circuit-task', 'circuit-granularity', 'circuit-method', 'circuit-prompts']);
  const correctDefaults = await defaults(['correct-behaviour', 'correct-granularity', 'correct-method', 'correct-prompts', 'correct-general']);
  // The default generation measures the speed the estimates are priced by.
  await page.getByTestId('generate').click();
  await page.waitForFunction(() => document.querySelector('[data-testid=error]') || document.querySelector('[data-testid=stats]')?.textContent.length > 0, null, { timeout: 600_000 });
  const speed = await page.getByTestId('badge-speed').innerText();
  console.log(`protocol: the page's default model in headless Chromium without WebGPU ("${device}"), ` +
    `${process.env.PAGE_BUILD ?? 'the dist/ build on disk'}; each job timed from its button's click until its panel reports it done, ` +
    `with the panel's defaults: compress ${JSON.stringify(compressDefaults)}, circuits ${JSON.stringify(circuitDefaults)}, ` +
    `correct ${JSON.stringify(correctDefaults)}; the default generation ran first at ${speed}`);
  const only = process.env.PAGE_BENCH_ONLY;
  const result = { device, speed };
  if (!only || only === 'compress') {
    const scoring = await timed(page, PAGE_JOBS.compress);
    console.log(`compress: ${scoring.status} (${scoring.seconds.toFixed(1)} s; estimated ${scoring.estimate})`);
    Object.assign(result, { compressDefaults, compressSeconds: scoring.seconds, compressEstimate: scoring.estimate });
  }
  if (!only || only === 'circuits') {
    const circuit = await timed(page, PAGE_JOBS.circuits);
    console.log(`circuits: ${circuit.status} (${circuit.seconds.toFixed(1)} s; estimated ${circuit.estimate})`);
    Object.assign(result, { circuitDefaults, circuitSeconds: circuit.seconds, circuitEstimate: circuit.estimate });
  }
  if (!only || only === 'correct') {
    const correction = await timed(page, PAGE_JOBS.correct);
    console.log(`correct: ${correction.status} (${correction.seconds.toFixed(1)} s; estimated ${correction.estimate})`);
    Object.assign(result, { correctDefaults, correctSeconds: correction.seconds, correctEstimate: correction.estimate });
  }
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  server.close();
}
