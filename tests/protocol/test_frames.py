import msgpack
import pytest
from rtprotocol import ERROR_CODES, TURN_ERROR_CODES, Codec, ProtocolError, validate_client_frame
from rtprotocol import frames as F
from rtprotocol.frames import CLIENT_FRAMES, PARAM_TYPES


def code_of(frame):
    with pytest.raises(ProtocolError) as info:
        validate_client_frame(frame)
    return info.value.code


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ([1, 2], "bad_frame"),
        ("hello", "bad_frame"),
        ({"text": "no type"}, "bad_field"),
        ({"t": 5}, "bad_field"),
        ({"t": "dance"}, "unknown_type"),
        ({"t": "say"}, "bad_field"),
        ({"t": "say", "text": 12}, "bad_field"),
        ({"t": "say", "text": "hi", "interrupt": "yes"}, "bad_field"),
        ({"t": "say", "text": "hi", "grammar": {"root": "x"}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"max_tokens": 0}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"temperature": "hot"}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"top_p": 1.5}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"priority": 11}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"priority": 1.5}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"priority": True}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"stop": ["", "x"]}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"seed": True}}, "bad_field"),
        ({"t": "say", "text": "hi", "params": {"cache": 1}}, "bad_field"),
        ({"t": "session.open", "params": {"cache": "yes"}}, "bad_field"),
        ({"t": "session.resume", "sid": "x", "ep": "e"}, "bad_field"),
        ({"t": "session.resume", "sid": "x", "ep": "e", "last_seq": 1.5}, "bad_field"),
        ({"t": "rollback", "tid": "2"}, "bad_field"),
        ({"t": "ping", "id": [1]}, "bad_field"),
    ],
)
def test_bad_frames_get_stable_codes(frame, code):
    assert code_of(frame) == code
    assert code in ERROR_CODES


def test_error_echoes_the_frame_id():
    with pytest.raises(ProtocolError) as info:
        validate_client_frame({"t": "say", "id": "a7"})
    assert info.value.frame_id == "a7"
    assert "say.text" in info.value.message


def test_unknown_keys_and_params_are_ignored():
    f = validate_client_frame({"t": "say", "text": "hi", "future": 1, "params": {"mirostat": 2, "seed": 3}})
    assert f["params"] == {"seed": 3}
    assert f["future"] == 1


def test_integers_accepted_where_floats_expected():
    assert validate_client_frame({"t": "say", "text": "x", "params": {"temperature": 1}})["params"]["temperature"] == 1


def test_msgpack_codec_rejects_text_and_garbage():
    c = Codec("rt.v1.msgpack")
    for data in ("{}", b"\xc1", b"\x92\x01"[:1]):
        with pytest.raises(ProtocolError) as info:
            c.decode(data)
        assert info.value.code == "bad_frame"


def test_json_codec_rejects_binary_and_garbage():
    c = Codec("rt.v1.json")
    for data in (b"{}", "{not json"):
        with pytest.raises(ProtocolError) as info:
            c.decode(data)
        assert info.value.code == "bad_frame"


def test_map_keys_must_be_strings():
    with pytest.raises(ProtocolError):
        Codec("rt.v1.msgpack").decode(msgpack.packb({1: 2}))


# --- numbers: finite, integers within 2^53, in every numeric field ------------------------------------------

_SAMPLE = {str: "x", int: 1, float: 1.0, dict: {}, bool: False, list: ["x"]}


def _minimal(kind):
    """The smallest valid frame of a type: its required fields with a value of their first type."""
    frame = {"t": kind}
    for field, (types, required) in CLIENT_FRAMES[kind].items():
        if required:
            frame[field] = _SAMPLE[types[0]]
    return frame


def _numeric_fields():
    """Every numeric field a client frame has, found from the registry so a new one is covered too."""
    out = [(kind, field) for kind, spec in CLIENT_FRAMES.items() for field, (types, _) in spec.items()]
    out = [(kind, (field,)) for kind, field in out if {int, float} & set(CLIENT_FRAMES[kind][field][0])]
    out += [("say", ("params", key)) for key, types in PARAM_TYPES.items() if {int, float} & set(types)]
    out += [(kind, ("id",)) for kind in CLIENT_FRAMES]  # an integer id, on any frame
    return out


def _with(kind, path, value):
    frame = _minimal(kind)
    if len(path) == 2:
        frame[path[0]] = {path[1]: value}
    else:
        frame[path[0]] = value
    return frame


def test_every_numeric_field_is_found():
    found = {(kind, path) for kind, path in _numeric_fields()}
    for expected in [
        ("session.resume", ("last_seq",)),
        ("rollback", ("tid",)),
        ("ping", ("ts",)),
        ("say", ("params", "temperature")),
        ("say", ("params", "top_p")),
        ("say", ("params", "seed")),
        ("say", ("params", "max_tokens")),
        ("say", ("params", "priority")),
        ("hello", ("id",)),
    ]:
        assert expected in found


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 2**53, -(2**53), 2**60, -(2**63)])
@pytest.mark.parametrize(("kind", "path"), _numeric_fields(), ids=lambda x: ".".join(x) if isinstance(x, tuple) else x)
def test_non_finite_and_unsafe_numbers_get_bad_field(kind, path, value):
    with pytest.raises(ProtocolError) as info:
        validate_client_frame(_with(kind, path, value))
    assert info.value.code == "bad_field"
    assert ".".join(path) in info.value.message


def test_unsafe_numbers_get_bad_field_through_the_msgpack_codec():
    c = Codec("rt.v1.msgpack")
    for frame in (
        {"t": "say", "text": "x", "params": {"temperature": float("nan")}},
        {"t": "session.resume", "sid": "s", "ep": "e", "last_seq": 2**64 - 1},
        {"t": "rollback", "tid": -(2**63)},
    ):
        with pytest.raises(ProtocolError) as info:
            validate_client_frame(c.decode(msgpack.packb(frame)))
        assert info.value.code == "bad_field"


def test_the_largest_safe_integers_are_accepted():
    top = 2**53 - 1
    assert validate_client_frame({"t": "say", "text": "x", "params": {"seed": top}})["params"]["seed"] == top
    assert validate_client_frame({"t": "rollback", "tid": top, "id": -top})["tid"] == top
    assert validate_client_frame({"t": "ping", "ts": 1.7e12})["ts"] == 1.7e12


def test_an_unsafe_id_is_not_echoed():
    with pytest.raises(ProtocolError) as info:
        validate_client_frame({"t": "ping", "id": 2**60})
    assert info.value.frame_id is None


# --- null is absent ------------------------------------------------------------------------------------------


def test_null_params_are_absent():
    f = validate_client_frame({"t": "say", "text": "hi", "params": {"temperature": None, "seed": 3, "stop": None}})
    assert f["params"] == {"seed": 3}


def test_null_keys_are_removed_as_if_not_sent():
    f = validate_client_frame({"t": "session.open", "sid": None, "id": None, "params": None, "snapshot": None})
    assert f == {"t": "session.open"}


def test_a_required_field_sent_as_null_is_missing():
    with pytest.raises(ProtocolError) as info:
        validate_client_frame({"t": "session.resume", "sid": "s", "ep": "e", "last_seq": None})
    assert info.value.code == "bad_field" and "last_seq is required" in info.value.message


# --- server frames -------------------------------------------------------------------------------------------


def test_turn_end_sends_only_the_optional_keys_given():
    usage, timings = {"prompt": 1, "reused": 0, "completion": 1}, {"queue_ms": 0, "ttft_ms": 1, "total_ms": 2}
    plain = F.turn_end("s", 4, 1, "stop", usage, timings)
    assert not {"xlen", "xcrc", "error", "code", "parsed"} & set(plain)
    failed = F.turn_end("s", 4, 1, "error", usage, timings, xlen=0, xcrc=0, error="disk full", code="store_failed")
    assert (failed["xlen"], failed["xcrc"], failed["code"]) == (0, 0, "store_failed")
    assert "parsed" not in failed


def test_turn_error_codes_are_registered():
    assert set(TURN_ERROR_CODES) <= set(ERROR_CODES)
