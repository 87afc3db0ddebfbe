"""Render a conversation with the model's own chat template (from the GGUF metadata), and hold back text
that may be the start of a stop string."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .base import Message

# Used only when a GGUF has no template; the bundled model carries this one.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatTemplate:
    def __init__(self, source: str | None, bos: str = "", eos: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(source or CHATML)
        self._bos, self._eos = bos, eos

    def render(self, messages: Sequence[Message], *, continue_last: bool = False) -> str:
        """The prompt text; with ``continue_last``, the last assistant message is left open to be extended."""
        tail = ""
        if continue_last and messages and messages[-1].role == "assistant":
            tail, messages = messages[-1].content, messages[:-1]
        text = self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=self._bos,
            eos_token=self._eos,
        )
        return text + tail


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


class StopMatcher:
    """Feeds generated text through; returns what is safe to emit, and whether a stop string was hit."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        buf = self._pending + text
        cut = min((i for i in (buf.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._pending = ""
            return buf[:cut], True
        hold = max((k for s in self._stops for k in range(1, len(s)) if buf.endswith(s[:k])), default=0)
        self._pending = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    @property
    def holding(self) -> bool:
        """Whether text is held back (it may be the start of a stop string)."""
        return bool(self._pending)

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
