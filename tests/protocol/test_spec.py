"""PROTOCOL.md and the code stay one registry: every error and close code appears in both."""

import re
from pathlib import Path

from rtprotocol import CLOSE_CODES, ERROR_CODES
from rtprotocol.frames import CLIENT_FRAMES

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
