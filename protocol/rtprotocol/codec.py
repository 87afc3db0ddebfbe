"""Encoding and decoding for the two subprotocols: ``rt.v1.msgpack`` (binary) and ``rt.v1.json`` (text)."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from .errors import ProtocolError
from .frames import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Frame

_packer = msgpack.Packer(use_bin_type=True)


def encode_msgpack(frame: Frame) -> bytes:
    data: bytes = _packer.pack(frame)
    return data


def encode_json(frame: Frame) -> str:
    return orjson.dumps(frame).decode()


def decode_msgpack(data: bytes | str) -> Any:
    if isinstance(data, str):
        raise ProtocolError("bad_frame", "rt.v1.msgpack takes binary frames; this one was text")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError("bad_frame", f"not valid msgpack: {type(exc).__name__}") from None


def decode_json(data: bytes | str) -> Any:
    if isinstance(data, bytes):
        raise ProtocolError("bad_frame", "rt.v1.json takes text frames; this one was binary")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_frame", f"not valid JSON: {exc.msg}") from None


class Codec:
    """The codec of one subprotocol: ``encode(frame)`` gives what to send, ``decode(message)`` what was sent."""

    def __init__(self, subprotocol: str) -> None:
        if subprotocol == SUBPROTOCOL_MSGPACK:
            self.encode, self.decode, self.binary = encode_msgpack, decode_msgpack, True
        elif subprotocol == SUBPROTOCOL_JSON:
            self.encode, self.decode, self.binary = encode_json, decode_json, False  # type: ignore[assignment]
        else:
            raise ValueError(f"unknown subprotocol {subprotocol!r}")
        self.subprotocol = subprotocol
