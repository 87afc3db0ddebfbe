import json
from pathlib import Path

import pytest
from rtprotocol import Codec, decode_msgpack, encode_msgpack, validate_client_frame
from rtprotocol.frames import CLIENT_FRAMES

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
