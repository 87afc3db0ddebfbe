"""Prompt planning: the prompt's text and tokens for a turn, what of the sequence's KV it can keep, and the tokens
that will open the session's next turn.

A prompt is the persona and the most recent turns that fit the context with room to answer. Its tokens reuse the
sequence's where they spell its text, so that a returning session's prompt costs what is new, not its history.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Message, Request
from .kv import Slot
from .model import Model

if TYPE_CHECKING:
    from .step import Running

NEXT_LINE = "\ue000"  # stands for the next user line when rendering what will precede it (private use)
PREFIX_MIN = 64  # tokens: a prompt's opening shorter than this is not worth remembering
PREFIXES = 32  # prompt openings remembered (a character card's text, a persona), most recently used kept
PREFIX_MAX_BYTES = 256 * 1024


class Planner:
    def __init__(self, model: Model, n_ctx_seq: int, can_shift: bool, counters: dict[str, int]) -> None:
        self.model, self.n_ctx_seq, self.can_shift, self.counters = model, n_ctx_seq, can_shift, counters
        # The tokens of prompts' openings up to their first control token (a card's text): tokenized once, then
        # copied for every session that opens with the same text (64 sessions of one card tokenize it once).
        self._prefixes: OrderedDict[bytes, list[int]] = OrderedDict()

    def prompt(self, request: Request, held: list[int], cut: int = 0) -> tuple[bytes | None, list[int], int]:
        """The prompt's text and tokens, and how many of the oldest turns it leaves out (after the persona). The
        text is None when even the newest turn alone had to be cut. ``held``: the tokens the session's sequence
        holds (reused where they spell the text, see ``tokenize``); ``cut``: what the session's last prompt left
        out, where the search starts. A try renders and tokenizes only the turns it keeps, so a turn's prompt costs
        what the context holds, not what the story has grown to.

        Where the context cannot shift (model._keys_can_shift), a story that outgrows it is cut as KoboldCpp's smart
        context does: to half the context at once, a cut the next turns keep while it fits, instead of losing one
        more turn at every turn and prefilling all the rest each time."""
        messages, template = request.messages, self.model.template
        limit = self.n_ctx_seq - min(request.max_tokens, self.n_ctx_seq // 4)  # room to answer
        most = max(0, len(messages) - _persona(messages) - 1)  # left out at most: all but the newest turn
        tries: dict[int, tuple[bytes, list[int]]] = {}

        def attempt(d: int) -> tuple[bytes, list[int]]:
            if d not in tries:
                text = template.render(kept(messages, d), continue_last=request.continue_last).encode()
                tries[d] = (text, self.tokenize(text, held))
            return tries[d]

        def fits(d: int, bound: int = limit) -> bool:
            return len(attempt(d)[1]) <= bound

        def done(d: int) -> tuple[bytes, list[int], int]:
            return (*attempt(d), d)

        if not fits(min(cut, most)) and not fits(most):  # (where the first fits, so does the second: it keeps less)
            return None, attempt(most)[1][-limit:], most
        settled = 0 if self.can_shift else self.last_split(held, len(held))
        if settled and 0 < cut <= most and fits(cut) and common_prefix(attempt(cut)[1], held) >= settled:
            return done(cut)  # the cut the sequence holds still fits: keep it
        d = smallest(fits, 0, most, min(cut, most))
        if self.can_shift or d == 0 or (settled and common_prefix(attempt(d)[1], held) >= settled):
            return done(d)  # (the last: a persona copied from another session, which any cut spells)
        return done(smallest(lambda c: c == most or fits(c, limit // 2), d, most, max(cut, d)))

    def tokenize(self, text: bytes, held: list[int]) -> list[int]:
        """The prompt's tokens. Only the text after the last control token of ``held`` that still spells the text
        is tokenized again: llama.cpp splits text at control tokens first, so this is how the whole text would be
        split wherever ``held`` is how its own text would be; where it is not (a model's samples often are not),
        the sequence's tokens stay, as in ``match_text``."""
        pieces = self.model.pieces(held)
        spelled = b"".join(pieces)
        if all(pieces) and text.startswith(spelled):
            n, pos = len(held), len(spelled)
        else:  # the text departs from what the sequence holds: find where
            n = pos = 0
            for p in pieces:
                if not p or not text.startswith(p, pos):
                    break
                pos += len(p)
                n += 1
        kept = self.last_split(held, n)
        if not kept:
            return self.fresh(text)
        pos -= sum(map(len, pieces[kept:n]))
        return held[:kept] + self.model.tokenize_bytes(text[pos:])

    def fresh(self, text: bytes) -> list[int]:
        """A prompt's tokens when the sequence holds none of it: a remembered opening is copied, not tokenized."""
        for prefix, tokens in self._prefixes.items():
            if text.startswith(prefix):
                self._prefixes.move_to_end(prefix)
                self.counters["cached_prefix_tokens"] = self.counters.get("cached_prefix_tokens", 0) + len(tokens)
                return tokens + self.model.tokenize_bytes(text[len(prefix) :])
        tokens = self.model.tokenize_bytes(text)
        self._remember(text, tokens)
        return tokens

    def _remember(self, text: bytes, tokens: list[int]) -> None:
        """Keep the prompt's opening up to the first control token after ``PREFIX_MIN`` tokens: the text before it
        is tokenized the same whatever follows (llama.cpp splits at control tokens first)."""
        cut = next((i + 1 for i in range(PREFIX_MIN, len(tokens) - 1) if self.model.splits_after(tokens[i])), 0)
        prefix = b"".join(self.model.pieces(tokens[:cut]))
        if not cut or len(prefix) > PREFIX_MAX_BYTES or not text.startswith(prefix):
            return  # (a tokenizer that adds text of its own, a leading space: nothing remembered)
        self._prefixes[prefix] = tokens[:cut]
        while len(self._prefixes) > PREFIXES:
            self._prefixes.popitem(last=False)

    def last_split(self, held: list[int], n: int) -> int:
        """How many of ``held[:n]`` end at a token after which text is tokenized the same alone: the tokens a prompt
        takes as they are (``tokenize``)."""
        while n and not self.model.splits_after(held[n - 1]):
            n -= 1
        return n

    def match_text(self, slot: Slot, text: bytes, prompt: list[int], keep: int) -> tuple[list[int], int]:
        """Reuse the sequence's KV as far as its tokens spell the prompt's text, even where they are not how the
        tokenizer would split that text (re-tokenized, a model's samples often no longer match, and the whole reply
        would be prefilled again). Only the rest of the text is tokenized anew."""
        pos = held = 0
        for tok in slot.tokens:
            piece = self.model.piece(tok, special=True)
            if not piece or text[pos : pos + len(piece)] != piece:
                break
            pos += len(piece)
            held += 1
        if held <= keep:
            return prompt, keep
        self.counters["text_matched_tokens"] += held - keep
        return slot.tokens[:held] + self.model.tokenize_bytes(text[pos:]), held

    def next_opening(self, q: Running) -> list[int]:
        """The tokens that will open the session's next turn whatever its line: the chat template's end of this
        reply and start of a user message (ChatML: ``<|im_end|>\\n<|im_start|>user\\n``), decoded while the player
        reads and types. Empty when the sequence does not spell the start of that text (a stop string cut the
        reply, the newest turn alone did not fit) or it would not fit."""
        request = q.job.request
        if q.text is None:
            return []
        reply = "".join(q.reply)
        messages = kept(request.messages, q.cut)  # as the prompt had them
        if request.continue_last and messages and messages[-1].role == "assistant":
            messages[-1] = Message("assistant", messages[-1].content + reply)
        else:
            messages.append(Message("assistant", reply))
        try:
            rendered = self.model.template.render([*messages, Message("user", NEXT_LINE)]).encode()
        except Exception:  # a template that refuses this turn order: nothing to decode ahead
            return []
        at = rendered.find(NEXT_LINE.encode())
        # This prompt's new tokens' text, cached before the next prompt is matched against them (the reply's was
        # looked up as it streamed).
        self.model.pieces(q.slot.tokens[q.reused : q.prompt_len])
        held = q.text + b"".join(self.model.pieces(q.slot.tokens[q.prompt_len :]))
        if at < 0 or not rendered[:at].startswith(held):
            return []
        ahead = self.model.tokenize_bytes(rendered[len(held) : at]) if at > len(held) else []
        return ahead if len(q.slot.tokens) + len(ahead) < self.n_ctx_seq * 3 // 4 else []  # room for a turn


def _persona(messages: list[Message]) -> int:
    """How many messages open the conversation as its persona (a system message), never left out of a prompt."""
    return 1 if messages and messages[0].role == "system" else 0


def kept(messages: list[Message], cut: int) -> list[Message]:
    """The messages a prompt keeps when it leaves out the ``cut`` oldest turns after the persona."""
    first = _persona(messages)
    return [*messages[:first], *messages[first + cut :]]


def smallest(ok: Callable[[int], bool], lo: int, hi: int, start: int) -> int:
    """The smallest ``n`` in ``lo..hi`` for which ``ok(n)``, where ``ok`` turns true once and stays true and
    ``ok(hi)`` is: searched outwards from ``start`` (the answer is usually near it), then by halves."""
    good = bad = min(max(start, lo), hi)
    step = 1
    if ok(good):
        while good > lo:  # down until one fails
            bad = max(lo, good - step)
            if not ok(bad):
                break
            good, step = bad, step * 2
        else:
            return good
    else:
        while True:  # up until one holds
            good = min(hi, bad + step)
            if ok(good):
                break
            bad, step = good, step * 2
    while good - bad > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens ``a`` and ``b`` share from the start. Compared by slices (in C), halving where they differ:
    a prompt is mostly a sequence's tokens plus a few, and a new session's is checked against every held KV."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    same, differs = 0, n  # a[:same] == b[:same], a[:differs] != b[:differs]
    while differs - same > 1:
        mid = (same + differs) // 2
        if a[same:mid] == b[same:mid]:
            same = mid
        else:
            differs = mid
    return same
