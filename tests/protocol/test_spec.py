"""PROTOCOL.md and the code stay one registry: every error and close code appears in both."""

import re
from pathlib import Path

from rtprotocol import CLOSE_CODES, ERROR_CODES, TURN_ERROR_CODES
from rtprotocol.frames import BAD_FRAMES_BURST, BAD_FRAMES_PER_S, CLIENT_FRAMES, LIMIT_KEYS

SPEC = (Path(__file__).parents[2] / "protocol" / "PROTOCOL.md").read_text()


def test_error_codes_match_the_spec():
    section = SPEC.split("## 4. Error codes")[1].split("## 5.")[0]
    assert set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M)) == set(ERROR_CODES)


def test_close_codes_match_the_spec():
    section = SPEC.split("## 5. Close codes")[1].split("## 6.")[0]
    assert {int(c) for c in re.findall(r"^\| (\d{4}) \|", section, re.M)} == set(CLOSE_CODES)


def test_every_client_frame_is_specified():
    section = SPEC.split("### 2.1")[1].split("### 2.2")[0]
    assert set(re.findall(r"^\| `([a-z.]+)` \|", section, re.M)) - {"t"} == set(CLIENT_FRAMES)


def _row(section: str, frame_type: str) -> str:
    """The table row of a frame type in a section of the spec."""
    part = SPEC.split(section)[1]
    return next(line for line in part.splitlines() if line.startswith(f"| `{frame_type}` |"))


def test_every_limit_is_specified():
    row = _row("### 2.2", "welcome")
    assert {key for key in LIMIT_KEYS if f"`{key}`" not in row} == set()


def test_turn_end_fields_and_codes_are_specified():
    row = _row("### 2.2", "turn.end")
    for key in ("xlen", "xcrc", "code", *TURN_ERROR_CODES):
        assert f"`{key}" in row, key


def test_the_budget_defaults_are_the_specs():
    section = " ".join(SPEC.split("## 1.")[1].split("## 2.")[0].split())  # lines rewrapped as one
    assert f"`welcome.limits.bad_frames_burst` of them at once (default {BAD_FRAMES_BURST})" in section
    assert f"`bad_frames_per_s` a second (default {BAD_FRAMES_PER_S})" in section
    assert "`unknown_type` never does" in section


def test_null_is_said_to_be_absent_once():
    assert SPEC.count("**Null is absent.**") == 1
