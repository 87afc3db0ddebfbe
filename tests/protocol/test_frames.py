import msgpack
import pytest
from rtprotocol import ERROR_CODES, Codec, ProtocolError, validate_client_frame


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
