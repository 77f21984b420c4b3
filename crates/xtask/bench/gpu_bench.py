"""GPU benchmark: Scalpel on wgpu against PyTorch + transformers + LXT 2.1 on the same GPU.

On the project's GPU machine `crates/xtask/bench/gpu_bench.sh` runs it (README "GPU benchmark");
here `cargo xtask bench gpu` runs it at a small shape, Scalpel on Mesa's lavapipe and PyTorch on
the CPU, to show it works end to end.

For each shape it makes a random-initialised Llama checkpoint with transformers (seed 0, float32
safetensors) with a word-level tokenizer.json over the vocabulary (speed does not depend on the
text) and a corpus of random token words, then runs, each in its own process:
  scalpel bench --device gpu              kernel launches, decode tokens/s, an N-token forward
  scalpel bench --device gpu --relevance  AttnLRP over N tokens with every W ⊙ G_W kept
  peer_gpu.py forward                     the forward and greedy decode with transformers
  peer_gpu.py relevance                   LXT 2.1 efficient AttnLRP, W ⊙ grad kept
Peak GPU memory is the device's used memory polled through NVML every 10 ms while a process
runs, minus the value before it started: the whole process (weights, context, workspace) and
the same measurement for both sides. Without NVML (no NVIDIA GPU) it is not measured.
Prints the protocol, each JSON line and the ratios; writes them to --out/gpu-bench.json too.
"""
import argparse
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Llama shapes: the two the README's GPU figures are about, and a tiny one for the local run.
SHAPES = {
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, tie_word_embeddings=True),
    "tinyllama": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                      rope_theta=10000.0, tie_word_embeddings=False),
    # Llama-2-7B's shape (benchmarks on the CPU only: `make_large_checkpoints.py`).
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                      rope_theta=10000.0, tie_word_embeddings=False),
    "small": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  rope_theta=10000.0, tie_word_embeddings=True),
}


def make_checkpoint(shape: str, root: Path, tokens: int, dtype: str = "float32",
                    max_shard_size: str | None = None) -> tuple[Path, Path]:
    """A random Llama of `shape` in root/shape (config, safetensors, tokenizer.json) and a corpus.

    `dtype` is the stored precision (initialised in it, so a 7B bf16 model never exists in
    float32); `max_shard_size` (e.g. "2GB") shards the safetensors with an index, as on the hub.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM

    out = root / shape
    corpus = root / f"{shape}-{tokens}.corpus"  # long enough for this run's token count
    if (out / "config.json").exists() and corpus.exists():
        return out, corpus
    config = LlamaConfig(**SHAPES[shape], rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    torch.set_default_dtype(getattr(torch, dtype))
    model = LlamaForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)
    save = dict(safe_serialization=True)
    if max_shard_size:
        save["max_shard_size"] = max_shard_size
    model.save_pretrained(out, **save)
    del model
    vocab = {"[UNK]": 0, **{f"t{i}": i for i in range(1, config.vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(out / "tokenizer.json"))
    rng = random.Random(0)
    words = " ".join(f"t{rng.randrange(3, config.vocab_size)}" for _ in range(tokens + 64))
    # The wiki corpus' article markup (scalpel::eval::corpus::wiki_text reads it).
    corpus.write_text(f'<doc id="0" title="random tokens">\n{words}\n</doc>\n', encoding="utf-8")
    return out, corpus


class PeakGpuMemory:
    """Polls NVML's used memory of GPU 0 in a thread; `peak` is the rise over the start value."""

    def __init__(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVIDIA driver: not measured
            self.nvml = None

    def used(self) -> int:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used

    def run(self, cmd: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, int | None]:
        if self.nvml is None:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout), None
        start, peak, done = self.used(), [0], threading.Event()

        def poll():
            while not done.is_set():
                peak[0] = max(peak[0], self.used())
                time.sleep(0.01)

        t = threading.Thread(target=poll)
        t.start()
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        finally:
            done.set()
            t.join()
        return result, max(peak[0] - start, 0)


def json_line(result: subprocess.CompletedProcess, who: str) -> dict:
    if result.returncode != 0:
        raise RuntimeError(f"{who} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{who} printed no JSON line:\n{result.stdout[-2000:]}")
    return json.loads(lines[-1])


def ratio(a, b):
    return a / b if a and b else float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", default="smollm2,tinyllama", help=f"comma-separated: {', '.join(SHAPES)}")
    p.add_argument("--tokens", type=int, default=2048, help="tokens of the forward and the relevance pass")
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up (the median is kept)")
    p.add_argument("--scalpel", default="target/release/scalpel")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="weights on both sides: Scalpel's --dtype f32|f16 (f16 products when decoding, "
                        "relevance in float32) against PyTorch and LXT in that dtype")
    p.add_argument("--torch-device", default=None, help="cuda (if available) or cpu")
    p.add_argument("--work", default="/tmp/scalpel-gpu-bench", help="where the checkpoints are written")
    p.add_argument("--out", default=None, help="folder for gpu-bench.json")
    p.add_argument("--budget", type=float, default=450,
                   help="seconds for the whole run (the GPU machine allows 10 minutes a command): a "
                        "measurement is cut at the deadline and reported as timed out")
    a = p.parse_args()

    import torch

    torch_device = a.torch_device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"protocol: random-initialised Llama checkpoints (transformers, seed 0, float32); "
        f"forward = one {a.tokens}-token forward with every logit read back to the host; decode = "
        f"greedy, {a.gen_tokens} new tokens after a 5-token prompt, KV cache; relevance = AttnLRP over "
        f"{a.tokens} tokens explaining the last position's top logit, input relevance and W ⊙ G_W of "
        f"every decoder-block Linear kept on the device (LXT 2.1 efficient mode for the peer); times = "
        f"median of {a.repeats} after a warm-up, each side in its own process, one after the other; "
        f"GPU memory = NVML used-memory peak minus the value before the process (whole process). "
        f"weights: {a.dtype} on both sides (Scalpel's relevance is float32 whatever the weights); "
        f"Scalpel: wgpu (fusion + autotune), {a.scalpel}; peer: PyTorch {torch.__version__} on {torch_device}",
        flush=True,
    )
    deadline = time.time() + a.budget
    memory = PeakGpuMemory()
    report = []
    for shape in a.shapes.split(","):
        started = time.time()
        model, corpus = make_checkpoint(shape, Path(a.work), a.tokens)
        print(f"\n== {shape}: {SHAPES[shape]} (checkpoint ready in {time.time() - started:.0f} s)", flush=True)
        scalpel_dtype = {"float32": "f32", "float16": "f16"}[a.dtype]
        common = ["-m", str(model), "--corpus", str(corpus), "--forward-tokens", str(a.tokens),
                  "--dtype", scalpel_dtype]
        peer = [sys.executable, str(HERE / "peer_gpu.py")]
        peer_common = ["--model", str(model), "--corpus", str(corpus), "--tokens", str(a.tokens),
                       "--repeats", str(a.repeats), "--device", torch_device, "--dtype", a.dtype]
        # Paired, so that a run cut by the budget still gives whole ratios.
        steps = {
            "scalpel forward": [a.scalpel, "bench", "--device", "gpu", *common,
                                "--gen-tokens", str(a.gen_tokens), "--repeats", str(a.repeats)],
            "peer forward": [*peer, "forward", *peer_common, "--gen-tokens", str(a.gen_tokens)],
            "scalpel relevance": [a.scalpel, "bench", "--device", "gpu", "--relevance", *common,
                                  "--repeats", str(a.repeats)],
            "peer relevance": [*peer, "relevance", *peer_common],
        }
        results = {}
        for name, cmd in steps.items():
            started = time.time()
            if deadline - started < 5:
                results[name] = {"error": f"skipped: the {a.budget:.0f} s budget is spent"}
                print(f"  {name}: {results[name]['error']}", flush=True)
                continue
            try:
                result, peak = memory.run(cmd, deadline - started)
                measured = {**json_line(result, name), "gpu_peak_bytes": peak}
                label = measured.get("device", "")
                if torch_device == "cuda" and name.startswith("scalpel") and "llvmpipe" in label:
                    # wgpu found no hardware Vulkan driver (see gpu_bench.sh) and fell back to Mesa:
                    # its figures are not the GPU's, so none of them enters a ratio.
                    measured = {"error": f"Scalpel ran on a software adapter ({label}), not the GPU"}
                results[name] = measured
                if name == "scalpel forward":  # the launch counts, printed before the JSON line
                    for line in result.stdout.splitlines():
                        if line.startswith("kernel launches"):
                            print(f"  {line}")
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                results[name] = {"error": str(e)[-2000:]}
            print(f"  {name} ({time.time() - started:.0f} s): {json.dumps(results[name])}", flush=True)
        ours_f, peer_f = results["scalpel forward"], results["peer forward"]
        ours_r, peer_r = results["scalpel relevance"], results["peer relevance"]
        gib = lambda b: f"{b / 2**30:.2f} GiB" if b is not None else "not measured"  # noqa: E731
        summary = {
            "decode tokens/s ratio (scalpel / pytorch, higher is better)":
                ratio(ours_f.get("gen_tokens_per_second"), peer_f.get("gen_tokens_per_second")),
            f"{a.tokens}-token forward time ratio (scalpel / pytorch, lower is better)":
                ratio(ours_f.get("forward_seconds"), peer_f.get("forward_seconds")),
            "relevance time ratio (scalpel / lxt, lower is better)":
                ratio(ours_r.get("relevance_seconds"), peer_r.get("relevance_seconds")),
            "relevance peak GPU memory ratio (scalpel / lxt, lower is better)":
                ratio(ours_r.get("gpu_peak_bytes"), peer_r.get("gpu_peak_bytes")),
        }
        for k, v in summary.items():
            print(f"  {k}: {v:.2f}")
        print(f"  relevance peak GPU memory: scalpel {gib(ours_r.get('gpu_peak_bytes'))}, "
              f"lxt {gib(peer_r.get('gpu_peak_bytes'))}", flush=True)
        report.append({"shape": shape, "config": SHAPES[shape], "results": results, "ratios": summary})
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "gpu-bench.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
