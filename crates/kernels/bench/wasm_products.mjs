// `cargo xtask bench wasm-products`: times the wasm module of examples/wasm_products.rs in Node
// (V8, as in Chromium): `x Wᵀ` for 1, 2, 4 and 8 rows of `x` on SmolLM2-135M's shapes, by gemm
// (as burn's CPU backend calls it in the page) and by scalpel_kernels, best of 3 batches; then
// one row with f16 weights.
import { readFileSync } from 'node:fs';

const { instance } = await WebAssembly.instantiate(readFileSync(process.argv[2]), {});
const { setup, products } = instance.exports;
const shapes = [['q/o_proj', 576, 576], ['up/gate_proj', 576, 1536], ['down_proj', 1536, 576], ['lm_head', 576, 49152]];
console.log(`protocol: Node ${process.version} (V8), one thread, wasm32 + SIMD128, release build; x Wᵀ with W [out, in] ` +
  'row-major, f32; each cell the best of 3 batches of about 0.5 s; gemm 0.19 with the strides burn-flex passes ' +
  '(Parallelism::None, as in the page) against scalpel_kernels::rows_times_transposed, one after the other');
console.log('| product | in → out | rows | gemm ms | kernel ms | speed-up (gemm / kernel) | kernel GB/s of W |');
console.log('|---|---|---|---|---|---|---|');
const f16Rows = [];
for (const [name, k, n] of shapes) {
  for (const m of [1, 2, 4, 8]) {
    setup(m, k, n);
    const time = (which) => {
      products(which, m, k, n, 1);
      const reps = Math.max(2, Math.round(5e8 / (m * k * n)));
      let best = Infinity;
      for (let batch = 0; batch < 3; batch++) {
        const start = performance.now();
        products(which, m, k, n, reps);
        best = Math.min(best, (performance.now() - start) / reps);
      }
      return best;
    };
    const [gemm, kernel] = [time(0), time(1)];
    const gbs = (4 * k * n) / (kernel * 1e6);
    console.log(`| ${name} | ${k} → ${n} | ${m} | ${gemm.toFixed(3)} | ${kernel.toFixed(3)} | ${(gemm / kernel).toFixed(2)} | ${gbs.toFixed(1)} |`);
    if (m === 1) f16Rows.push([name, k, n, time(2), time(3), kernel]);
  }
}
console.log('\nf16 weights, one row (gemm: its f16 × f16 product; kernel: f16 widened to float32 as read):');
console.log('| product | in → out | gemm f16 ms | kernel f16 ms | speed-up (gemm / kernel) | kernel f16 / kernel f32 time |');
console.log('|---|---|---|---|---|---|');
for (const [name, k, n, gemm, kernel, f32] of f16Rows) {
  console.log(`| ${name} | ${k} → ${n} | ${gemm.toFixed(3)} | ${kernel.toFixed(3)} | ${(gemm / kernel).toFixed(2)} | ${(kernel / f32).toFixed(2)} |`);
}
