"""A larger model with random weights, for benchmarks: it costs what a real model of its size costs to prefill
and decode (its text does not matter). Written as F16 with the bundled tokenizer (vocabulary padded to a
realistic size), then quantized.

    python -m training.random_gguf --out build/models --dim 1024 --layers 12 --ffn 2816 --vocab 32000

The defaults give about 168 M parameters, 180 MB as Q8_0 (generated, never committed).

With ``--words-only`` the model can only say whole words (`` the old road``): every other token's logit is pushed
far down (one residual dimension is held constant and a separate output matrix weighs it), so its replies
re-tokenize to exactly the tokens it sampled, as a real model's mostly do. Without it, a random model's samples
(`` pad3273`` comes back as several tokens) defeat every cache that matches the next prompt by re-tokenizing it,
which tells more about random weights than about the servers. It adds an untied output matrix (about 201 M
parameters with the defaults).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf
import numpy as np

from .export_gguf import quantize, write_tokenizer


def write(
    out: Path,
    tokenizer: Path,
    dim: int,
    layers: int,
    heads: int,
    kv_heads: int,
    ffn: int,
    vocab: int,
    context: int,
    seed: int,
    words_only: bool = False,
) -> Path:
    rng = np.random.default_rng(seed)
    name = f"random-{dim}x{layers}" + ("-words" if words_only else "")
    path = out / f"{name}-f16.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_description("random weights for rtserver benchmarks: costs what a real model of this size costs")
    w.add_context_length(context)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(dim // heads)
    n_vocab = write_tokenizer(w, tokenizer, pad_to=vocab)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    kv = dim // heads * kv_heads

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    embd = mat(n_vocab, dim)
    if words_only:
        embd[:, 0] = 100.0  # a residual dimension every position carries, far larger than what the layers add
        out = mat(n_vocab, dim)
        out[:, 0] = -1.0  # ... which pushes every token's logit far down,
        out[whole_words(tokenizer), 0] = 0.0  # except whole words'
        w.add_tensor("output.weight", out)
    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(dim, dtype=np.float32))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(dim, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(dim, dim))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(kv, dim))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(kv, dim))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(dim, dim))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(dim, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(ffn, dim))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(ffn, dim))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(dim, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=True)
    w.close()
    n_params = n_vocab * dim * (2 if words_only else 1) + layers * (2 * dim * dim + 2 * kv * dim + 3 * dim * ffn)
    print(f"{path}: {n_params / 1e6:.0f} M parameters")
    return path


def whole_words(tokenizer: Path) -> list[int]:
    """Ids of tokens that are a space and a word of letters, and that the tokenizer gives for that text."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    ids = []
    for piece, i in tok.get_vocab().items():
        text = tok.decode([i])
        if piece.startswith("\u0120") and text[1:].isascii() and text[1:].isalpha() and tok.encode(text).ids == [i]:
            ids.append(i)
    return ids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("build/models"))
    p.add_argument("--tokenizer", type=Path, default=Path("training/tokenizer.json"))
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=2816)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--words-only", action="store_true", help="it says only whole words (see above)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    f16 = write(
        a.out, a.tokenizer, a.dim, a.layers, a.heads, a.kv_heads, a.ffn, a.vocab, a.context, a.seed, a.words_only
    )
    import llama_cpp

    q8 = f16.with_name(f16.name.replace("-f16", "-q8_0"))
    quantize(f16, q8, llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0)
    print(f"{q8}: {q8.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
