import json
from pathlib import Path

import pytest
from rtprotocol import TURN_ERROR_CODES, Codec, decode_msgpack, encode_msgpack, text_check, validate_client_frame
from rtprotocol import frames as F
from rtprotocol.frames import CLIENT_FRAMES, LIMIT_KEYS

VECTORS = json.loads((Path(__file__).parents[2] / "protocol" / "vectors" / "frames.json").read_text())


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_decodes_to_json_form(v):
    assert decode_msgpack(bytes.fromhex(v["msgpack"])) == v["json"]


@pytest.mark.parametrize("v", [v for v in VECTORS if v["encode"]], ids=lambda v: v["name"])
def test_encodes_byte_for_byte(v):
    assert encode_msgpack(v["json"]).hex() == v["msgpack"]


@pytest.mark.parametrize("v", [v for v in VECTORS if v["json"]["t"] in CLIENT_FRAMES], ids=lambda v: v["name"])
def test_client_vectors_are_valid_frames(v):
    assert validate_client_frame(dict(v["json"]))["t"] == v["json"]["t"]


def test_json_subprotocol_round_trips_every_vector():
    codec = Codec("rt.v1.json")
    for v in VECTORS:
        assert codec.decode(codec.encode(v["json"])) == v["json"]


def test_every_client_frame_type_has_a_vector():
    assert {v["json"]["t"] for v in VECTORS} >= set(CLIENT_FRAMES)


BY_NAME = {v["name"]: v["json"] for v in VECTORS}


def test_turn_end_checks_the_deltas_before_it():
    text = BY_NAME["delta"]["x"] + BY_NAME["delta_unicode"]["x"]
    assert (BY_NAME["turn_end"]["xlen"], BY_NAME["turn_end"]["xcrc"]) == text_check(text)
    assert BY_NAME["turn_end"]["xcrc"] >= 2**31  # pins the unsigned form
    failed = BY_NAME["turn_end_store_failed"]
    assert (failed["xlen"], failed["xcrc"]) == text_check(BY_NAME["delta"]["x"])
    assert failed["code"] in TURN_ERROR_CODES


def test_welcome_carries_every_limit():
    limits = BY_NAME["welcome"]["limits"]
    assert set(limits) == set(LIMIT_KEYS)
    assert limits["resume_grace_s"] % 1  # a fraction survives


def test_the_error_vector_names_its_session():
    assert BY_NAME["error"]["sid"] and BY_NAME["error"]["id"] is not None


def test_a_null_vector_validates_as_absent():
    f = validate_client_frame(dict(BY_NAME["say_null"], params=dict(BY_NAME["say_null"]["params"])))
    assert "sid" not in f and f["params"] == {"seed": 3}


def _strip(frame):
    return {k: v for k, v in frame.items() if k not in ("t", "sid", "seq", "tid", "reason", "usage", "timings")}


@pytest.mark.parametrize("name", ["turn_end", "turn_end_cancelled", "turn_end_store_failed"])
def test_the_turn_end_helper_writes_the_vectors_bytes(name):
    v = BY_NAME[name]
    extra = _strip(v)
    built = F.turn_end(v["sid"], v["seq"], v["tid"], v["reason"], v["usage"], v["timings"], **extra)
    assert encode_msgpack(built).hex() == next(x["msgpack"] for x in VECTORS if x["name"] == name)


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("welcome", lambda v: F.welcome(v["server"], v["node"], v["limits"], v["hb"], v["models"])),
        ("error", lambda v: F.error(v["code"], v["msg"], frame_id=v["id"], sid=v["sid"])),
        ("error_busy", lambda v: F.error(v["code"], v["msg"], retry_after=v["retry_after"])),
        ("pong", lambda v: F.pong(v["id"])),
        ("delta", lambda v: F.delta(v["sid"], v["seq"], v["tid"], v["x"])),
    ],
)
def test_server_helpers_write_the_vectors_bytes(name, build):
    assert encode_msgpack(build(BY_NAME[name])).hex() == next(x["msgpack"] for x in VECTORS if x["name"] == name)
