"""Train the bundled model's tokenizer: byte-level BPE with the GPT-2 pre-tokenizer regex.

llama.cpp's ``gpt-2`` pre-tokenizer applies the same regex, so the GGUF tokenizer splits text as this one
does; ``tests/test_model.py`` checks that both give the same ids on held-out text.

    python -m training.tokenizer --corpus build/corpus/train.txt --out training/tokenizer.json
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train(corpus: Path, vocab_size: int, max_lines: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    with open(corpus) as f:
        lines = (line.replace("<|im_start|>", "\n").replace("<|im_end|>", "\n") for line in f)
        tok.train_from_iterator(itertools.islice(lines, max_lines), trainer=trainer)
    return tok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("build/corpus/train.txt"))
    p.add_argument("--out", type=Path, default=Path("training/tokenizer.json"))
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--max-lines", type=int, default=2_000_000)
    a = p.parse_args()
    train(a.corpus, a.vocab_size, a.max_lines).save(str(a.out))


if __name__ == "__main__":
    main()
