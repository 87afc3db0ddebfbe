"""Property tests (hypothesis) of the decoders, the frame validator and the session-protocol core: whatever a
peer sends, malformed or adversarial, they raise nothing but ``ProtocolError`` with a registered code.

No deadline (timing is never asserted); a bounded number of examples by default, more with
``RT_FUZZ_EXAMPLES=20000`` for a longer run.
"""

from __future__ import annotations

import math
import os
from typing import Any

import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtprotocol import ERROR_CODES, ProtocolError, validate_client_frame
from rtprotocol import core as C
from rtprotocol.codec import decode_json, decode_msgpack
from rtprotocol.frames import CLIENT_FRAMES

EXAMPLES = int(os.environ.get("RT_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack carries
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
)
FIELDS = sorted({f for spec in CLIENT_FRAMES.values() for f in spec} | {"id", "params", "t"})
PARAM_KEYS = ["temperature", "top_p", "seed", "max_tokens", "stop", "priority", "other"]


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    """Near-valid frames: a real type (mostly) with fields of any type, so validation's corners are reached."""
    t = draw(st.sampled_from(sorted(CLIENT_FRAMES)) | st.text(max_size=12))
    f = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6))
    if draw(st.booleans()):
        f["params"] = draw(st.dictionaries(st.sampled_from(PARAM_KEYS), values, max_size=4))
    return {**f, "t": t}


def only_protocol_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_the_msgpack_decoder_takes_any_bytes(data: bytes):
    only_protocol_errors(decode_msgpack, data)


@FUZZ
@given(st.text(max_size=300))
def test_the_json_decoder_takes_any_text(data: str):
    only_protocol_errors(decode_json, data)


@FUZZ
@given(values)
def test_validation_takes_any_decoded_value(value: Any):
    only_protocol_errors(validate_client_frame, value)


@FUZZ
@given(frames())
def test_a_valid_frame_keeps_the_protocols_promises(frame: dict[str, Any]):
    """Whatever validation lets through is safe for the core: a known type, and its known fields (and params)
    finite numbers and safe integers. (Unknown keys are ignored, whatever they hold.)"""
    out = only_protocol_errors(validate_client_frame, msgpack.unpackb(msgpack.packb(frame, use_bin_type=True)))
    if out is None:
        return
    assert out["t"] in CLIENT_FRAMES
    known = {k: v for k, v in out.items() if k in CLIENT_FRAMES[out["t"]] or k == "id"}
    for key, value in {**known, **out.get("params", {})}.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
        if isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) < 2**53, key


@FUZZ
@given(st.lists(frames(), max_size=12), st.integers(min_value=1, max_value=3))
def test_the_core_takes_any_sequence_of_frames(sequence: list[dict[str, Any]], max_sessions: int):
    core = C.ConnectionCore(max_sessions)
    for frame in sequence:
        valid = only_protocol_errors(validate_client_frame, frame)
        if valid is None:
            continue
        action = only_protocol_errors(core.receive, valid)
        if isinstance(action, C.Open):  # what the transport reports back: it attached
            core.attached_to(f"s{len(core.attached)}")
        elif isinstance(action, (C.Attach, C.Resume)):
            core.attached_to(action.sid)
        elif isinstance(action, C.Close):
            core.detached(action.sid)
        assert len(core.attached) <= max_sessions


@FUZZ
@given(frames())
def test_json_and_msgpack_validate_alike(frame: dict[str, Any]):
    """A frame that survives both encodings is judged the same way by both."""
    try:
        as_json = orjson.loads(orjson.dumps(frame))
    except (TypeError, orjson.JSONEncodeError):
        return  # bytes, big integers: not JSON
    a = only_protocol_errors(validate_client_frame, as_json)
    b = only_protocol_errors(validate_client_frame, msgpack.unpackb(msgpack.packb(frame, use_bin_type=True)))
    assert (a is None) == (b is None) or _has_nan(frame)


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


def test_params_on_a_frame_type_without_params_are_ignored_not_a_crash():
    """Found by the fuzzer: ``cancel`` with ``params: []`` raised AttributeError inside the validator."""
    assert validate_client_frame({"t": "cancel", "params": []}) == {"t": "cancel"}
