"""Train the bundled model: a small Llama-architecture transformer on the procedural corpus.

Torch is needed here only (``pip install torch==2.13.0`` takes the CPU wheel); it is never a runtime dependency.
Runs on CPU or CUDA, checkpoints every ``--ckpt-every`` steps into ``--out`` and resumes from the last checkpoint,
so no single run needs to be long. At the end it writes ``weights.npz`` (float16 arrays under GGUF tensor names)
that ``training.export_gguf`` turns into the shipped GGUF files.

    python -m training.corpus --out build/corpus
    python -m training.train --corpus build/corpus/train.txt --out build/train --steps 3000 --batch 64 --seq 1024
    python -m training.train --corpus build/corpus/train.txt --out build/train2048 --init build/train/weights.npz \
        --steps 800 --batch 32 --seq 2048 --lr 1e-3

RoPE rotates adjacent pairs (llama.cpp's LLAMA "norm" rope), so the weights need no permutation on export.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Config:
    vocab_size: int = 1878
    dim: int = 256
    n_layers: int = 8
    n_heads: int = 8
    n_kv_heads: int = 4
    ffn_dim: int = 768
    context: int = 2048
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0


def rope_tables(cfg: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    head_dim = cfg.dim // cfg.n_heads
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    ang = torch.outer(torch.arange(cfg.context, device=device).float(), inv)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, D); pairs (2i, 2i+1) rotate together, as llama.cpp's LLAMA_ROPE_TYPE_NORM does.
    t = x.shape[2]
    x2 = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = x2[..., 0], x2[..., 1]
    c, s = cos[:t], sin[:t]
    out = torch.stack((a * c - b * s, a * s + b * c), dim=-1)
    return out.reshape(x.shape).type_as(x)


class Block(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        hd = cfg.dim // cfg.n_heads
        self.cfg, self.hd = cfg, hd
        self.attn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.q = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.k = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.v = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.o = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        self.ffn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, t, self.cfg.n_heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.cfg.n_kv_heads, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.cfg.n_kv_heads, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        nn.init.normal_(self.embed.weight, std=0.02)
        for blk in self.blocks:
            for lin in (blk.q, blk.k, blk.v, blk.gate, blk.up):
                nn.init.normal_(lin.weight, std=0.02)
            for lin in (blk.o, blk.down):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    def forward(self, idx: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.norm(x) @ self.embed.weight.T  # tied output, as GGUF allows without output.weight

    def _named(self) -> dict[str, torch.Tensor]:
        """Parameters under their GGUF tensor names."""
        out = {"token_embd.weight": self.embed.weight, "output_norm.weight": self.norm.weight}
        names = {
            "attn_norm": "attn_norm",
            "q": "attn_q",
            "k": "attn_k",
            "v": "attn_v",
            "o": "attn_output",
            "ffn_norm": "ffn_norm",
            "gate": "ffn_gate",
            "up": "ffn_up",
            "down": "ffn_down",
        }
        for i, blk in enumerate(self.blocks):
            for attr, gname in names.items():
                out[f"blk.{i}.{gname}.weight"] = getattr(blk, attr).weight
        return out

    def gguf_tensors(self) -> dict[str, np.ndarray]:
        return {k: v.detach().float().cpu().numpy() for k, v in self._named().items()}

    def load_gguf_tensors(self, weights: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for name, param in self._named().items():
                param.copy_(torch.from_numpy(np.asarray(weights[name], dtype=np.float32)))


def tokenize_corpus(corpus: Path, tokenizer: Path, cache: Path) -> np.ndarray:
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    eot = tok.token_to_id("<|endoftext|>")
    ids: list[int] = []
    with open(corpus) as f:
        lines, buf = [], []
        for line in f:
            if line.strip():
                buf.append(line)
            elif buf:
                lines.append("".join(buf))
                buf = []
        if buf:
            lines.append("".join(buf))
    # One conversation per entry, each closed by <|endoftext|>, then packed.
    for enc in tok.encode_batch(lines):
        ids.extend(enc.ids)
        ids.append(eot)
    arr = np.asarray(ids, dtype=np.uint16)
    np.save(cache, arr)
    return arr


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("build/corpus/train.txt"))
    p.add_argument("--tokenizer", type=Path, default=Path("training/tokenizer.json"))
    p.add_argument("--out", type=Path, default=Path("build/train"))
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=110.0, help="stop (after a checkpoint) before this")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--init", type=Path, help="start from a weights.npz (e.g. to extend the context: a second stage at --seq 2048)"
    )
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(a.seed)
    data = tokenize_corpus(a.corpus, a.tokenizer, a.out / "tokens.npy")
    from tokenizers import Tokenizer

    cfg = Config(vocab_size=Tokenizer.from_file(str(a.tokenizer)).get_vocab_size())
    model = Model(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=dev.type == "cuda")
    step, ckpt = 0, a.out / "ckpt.pt"
    if a.init is not None and not ckpt.exists():
        model.load_gguf_tensors(dict(np.load(a.init)))
        print(f"initialised from {a.init}")
    if ckpt.exists():
        state = torch.load(ckpt, map_location=dev)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed at step {step}")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f} M parameters, {len(data) / 1e6:.1f} M tokens, device {dev}", flush=True)
    cos, sin = rope_tables(cfg, dev)
    gen = np.random.default_rng(a.seed + step)
    started, last = time.time(), time.time()
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    while step < a.steps:
        starts = gen.integers(0, len(data) - a.seq - 1, size=a.batch)
        chunk = np.stack([data[s : s + a.seq + 1] for s in starts]).astype(np.int64)
        xy = torch.from_numpy(chunk).to(dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.lr, warmup=100)
        with amp:
            logits = model(xy[:, :-1], cos, sin)
        loss = F.cross_entropy(logits.float().view(-1, cfg.vocab_size), xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(
                f"step {step}/{a.steps} loss {loss.item():.4f} ({(time.time() - last) / 50 * 1000:.0f} ms/step)",
                flush=True,
            )
            last = time.time()
        if step % a.ckpt_every == 0 or step == a.steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
            if (time.time() - started) / 60 > a.max_minutes:
                print("time budget reached; rerun to resume")
                return
    weights = {k: v.astype(np.float16) for k, v in model.gguf_tensors().items()}
    np.savez(a.out / "weights.npz", **weights)
    (a.out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    print(f"wrote {a.out / 'weights.npz'}")


if __name__ == "__main__":
    main()
