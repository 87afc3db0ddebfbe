"""Write the trained weights as GGUF (F16) with the tokenizer and chat template, then quantize to Q4_0 (shipped).

    python -m training.export_gguf --train build/train --out rtserver/models

The tokenizer goes in as llama.cpp's ``gpt2`` BPE with the ``gpt-2`` pre-tokenizer (the regex our
byte-level BPE was trained with). Quantizing uses llama.cpp itself through llama-cpp-python.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gguf
import numpy as np

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
NAME = "rtserver-tiny"


def write_tokenizer(w: gguf.GGUFWriter, tokenizer: Path, pad_to: int = 0) -> int:
    """Write the tokenizer; with ``pad_to``, add plain tokens (``pad0``, ``pad1``, …, never produced by the
    tokenizer, printable when sampled) up to that vocabulary size. Returns the vocabulary size."""
    spec = json.loads(tokenizer.read_text())
    vocab: dict[str, int] = spec["model"]["vocab"]
    specials = {t["content"]: t["id"] for t in spec["added_tokens"]}
    tokens = [""] * len(vocab)
    for tok, i in vocab.items():
        tokens[i] = tok
    tokens += [f"pad{i}" for i in range(max(0, pad_to - len(tokens)))]
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(specials["<|endoftext|>"])
    w.add_eos_token_id(specials["<|im_end|>"])
    w.add_eot_token_id(specials["<|im_end|>"])
    w.add_pad_token_id(specials["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    return len(tokens)


def write_f16(train_dir: Path, tokenizer: Path, out: Path) -> Path:
    cfg = json.loads((train_dir / "config.json").read_text())
    weights = np.load(train_dir / "weights.npz")
    path = out / f"{NAME}-f16.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(NAME)
    w.add_description("rtserver's bundled offline model: NPC dialogue, quests, short stories (docs/model-card.md)")
    w.add_context_length(cfg["context"])
    w.add_embedding_length(cfg["dim"])
    w.add_block_count(cfg["n_layers"])
    w.add_feed_forward_length(cfg["ffn_dim"])
    w.add_head_count(cfg["n_heads"])
    w.add_head_count_kv(cfg["n_kv_heads"])
    w.add_layer_norm_rms_eps(cfg["norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_rope_dimension_count(cfg["dim"] // cfg["n_heads"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    write_tokenizer(w, tokenizer)
    for name in weights.files:
        arr = weights[name]
        # Norm weights stay F32, as llama.cpp's converter keeps 1-D tensors.
        w.add_tensor(name, arr.astype(np.float32) if arr.ndim == 1 else arr.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def quantize(src: Path, dst: Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed with {rc}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=Path("build/train"))
    p.add_argument("--tokenizer", type=Path, default=Path("training/tokenizer.json"))
    p.add_argument("--out", type=Path, default=Path("rtserver/models"))
    p.add_argument(
        "--types",
        default="q4_0",
        help="comma-separated quantizations to write beside F16: q4_0, q8_0, "
        "q4_k_m (only q4_0 ships; the others are for measuring)",
    )
    p.add_argument(
        "--from-gguf",
        type=Path,
        help="quantize this F16 GGUF instead of writing one from --train (e.g. rtserver/models/rtserver-tiny-f16.gguf "
        "or a random_gguf model); files are named after it, -f16 replaced by the type",
    )
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    f16 = a.from_gguf or write_f16(a.train, a.tokenizer, a.out)
    stem = f16.stem.removesuffix("-f16")
    import llama_cpp

    ftypes = {
        "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
        "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
        "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    }
    for name in a.types.split(","):
        quantize(f16, a.out / f"{stem}-{name}.gguf", ftypes[name])
    for f in sorted(a.out.glob(f"{stem}-*.gguf")):
        print(f"{f}: {f.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
