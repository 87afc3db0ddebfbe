"""What the replay tool reads out of a recording (rtserver/replay/turns.py) and its progress bar."""

from __future__ import annotations

import io

from rtprotocol.recording import Entry, RecordingError, parse

from rtserver.replay.run import Progress
from rtserver.replay.turns import comparable, deterministic, percentile, turns


def test_which_turns_are_deterministic():
    assert deterministic("say", {"seed": 1}, {})
    assert deterministic("say", {}, {"seed": 1})
    assert not deterministic("regenerate", {}, {"seed": 1})  # draws its own seed
    assert deterministic("regenerate", {"seed": 2}, {})
    assert deterministic("say", {"temperature": 0}, {}) and deterministic("say", {}, {"temperature": 0})
    assert not deterministic("say", {}, {})


def e(ms: float, sent: bool, **f: object) -> Entry:
    return Entry(0, sent, ms, dict(f))


def test_turns_are_read_with_their_text_and_client_side_latency():
    entries = [
        e(0, True, t="session.open", id=1, params={"seed": 4}),
        e(1, False, t="session", id=1, sid="A"),
        e(10, True, t="say", id=2, text="hi"),
        e(12, False, t="turn.start", id=2, tid=1, kind="say"),
        e(15, False, t="delta", tid=1, x="Hel"),
        e(16, False, t="delta", tid=1, x="lo"),
        e(20, False, t="turn.end", tid=1, reason="stop"),
        e(30, True, t="regenerate", id=3),
        e(31, False, t="turn.start", id=3, tid=2, kind="regenerate"),
        e(40, False, t="turn.end", tid=2, reason="cancelled"),
    ]
    a, b = turns(entries)
    assert (a.text, a.reason, a.deterministic, a.first_ms, a.total_ms) == ("Hello", "stop", True, 5, 10)
    assert (b.text, b.deterministic, b.first_ms) == ("", False, None)
    assert comparable(a, a) and not comparable(b, b)


def test_a_file_that_is_not_a_recording_is_refused():
    for text in ("", "{}\n", '{"rtreplay": 1}\nnot json\n'):
        try:
            parse(io.StringIO(text))
        except RecordingError:
            continue
        raise AssertionError(text)
    assert parse(io.StringIO('{"rtreplay": 1}\n')).entries == []


def test_the_progress_bar_draws_on_each_percent():
    out = io.StringIO()
    bar = Progress(4, out, show=True)
    for _ in range(4):
        bar.step()
    bar.close()
    assert out.getvalue().endswith("\r[" + "#" * 25 + "] 4/4 turns\n") and out.getvalue().count("\r") == 4
    quiet = io.StringIO()
    Progress(4, quiet, show=False).step()
    assert quiet.getvalue() == ""
    assert percentile([3, 1, 2], 0.5) == 2 and percentile([], 0.5) is None
