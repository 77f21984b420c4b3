"""Writes the fuzzers' seed corpus (corpus/<target>/): small valid inputs of every format Scalpel
reads, so mutations start from files that get deep into the parsers. Run from the repository root
with a Python that has gguf, numpy, safetensors and tokenizers (the fixture scripts' environment):

    python crates/core/fuzz/make_seeds.py

Deterministic; the files are small (a few KB) so the fuzzers stay fast.
"""

import json
import pathlib
import shutil

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

ROOT = pathlib.Path(__file__).resolve().parents[3]
CORPUS = ROOT / "crates/core/fuzz/corpus"
rng = np.random.default_rng(0)


def target(name: str) -> pathlib.Path:
    d = CORPUS / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def tiny_gguf(path: pathlib.Path, quant: GGMLQuantizationType) -> None:
    """A one-layer Llama with a byte-level BPE vocabulary, as llama.cpp writes them."""
    vocab = ["<s>", "</s>", "Ġ"] + [chr(c) for c in range(97, 97 + 26)] + ["Ġa", "Ġb"]
    n_vocab, d, ff = len(vocab), 32, 64
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(vocab)
    w.add_token_types([3, 3] + [1] * (n_vocab - 2))
    w.add_token_merges(["Ġ a", "Ġ b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)

    def tensor(name, shape, q=quant):
        data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if q == GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, quantize(data, q), raw_dtype=q)

    tensor("token_embd.weight", (n_vocab, d), GGMLQuantizationType.Q8_0)
    tensor("output_norm.weight", (d,), GGMLQuantizationType.F32)
    p = "blk.0."
    tensor(p + "attn_norm.weight", (d,), GGMLQuantizationType.F32)
    tensor(p + "ffn_norm.weight", (d,), GGMLQuantizationType.F32)
    tensor(p + "attn_q.weight", (d, d))
    tensor(p + "attn_k.weight", (d // 2, d))
    tensor(p + "attn_v.weight", (d // 2, d))
    tensor(p + "attn_output.weight", (d, d))
    tensor(p + "ffn_gate.weight", (ff, d))
    tensor(p + "ffn_up.weight", (ff, d))
    tensor(p + "ffn_down.weight", (d, ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    gguf_dir = target("gguf")
    for q in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0, GGMLQuantizationType.F32):
        tiny_gguf(gguf_dir / f"tiny-llama-{q.name.lower()}.gguf", q)
    smollm2 = ROOT / "assets/SmolLM2-135M-Instruct.Q4_1.gguf"
    if smollm2.exists():
        # The real file's first 16 KiB: its header and the start of its metadata.
        (gguf_dir / "smollm2-head.gguf").write_bytes(smollm2.read_bytes()[: 16 * 1024])

    st_dir = target("safetensors")
    save_file(
        {
            "model.embed_tokens.weight": rng.standard_normal((4, 3)).astype(np.float32),
            "model.norm.weight": np.ones(3, dtype=np.float16),
            "lm_head.weight": rng.standard_normal((2, 2)).astype(np.float32),
        },
        str(st_dir / "small.safetensors"),
        metadata={"format": "pt"},
    )
    shutil.copy(
        ROOT / "tests/fixtures/models/llama-untied-llama3rope/model.safetensors.index.json",
        st_dir / "index.json",
    )

    config_dir = target("config")
    for c in sorted((ROOT / "tests/fixtures/models").glob("*/config.json")):
        shutil.copy(c, config_dir / f"{c.parent.name}.json")

    tok_dir = target("tokenizer")
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        ["The capital of France is Paris.", "When Mary and John went to the store"],
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    (tok_dir / "byte-level-bpe.json").write_text(bpe.to_str())
    words = {f"t{i}": i for i in range(16)}
    word_level = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
        "decoder": None, "model": {"type": "WordLevel", "vocab": words, "unk_token": "t0"},
    }
    (tok_dir / "word-level.json").write_text(json.dumps(word_level))
    for d in (gguf_dir, st_dir, config_dir, tok_dir):
        sizes = sorted(f.stat().st_size for f in d.iterdir())
        print(f"{d.relative_to(ROOT)}: {len(sizes)} files, largest {sizes[-1]} bytes")


if __name__ == "__main__":
    main()
