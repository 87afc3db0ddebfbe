"""Per-frame encode cost: framing shapes and codecs for one delta, and rtserver's own path (the frame dict, the
msgpack encode it does once per frame, and the websockets framing of the send). Median of several runs.

    python -m bench.encode
"""

from __future__ import annotations

import json
import statistics
import sys
import timeit

import msgpack
import orjson
from rtprotocol import encode_msgpack
from rtprotocol import frames as F
from websockets.frames import Frame, Opcode

from .common import write_json

SID = "q1W2e3R4t5Y6u7I8o9P0aA"


def per_call_us(stmt: object, number: int = 200_000, repeat: int = 5) -> float:
    return statistics.median(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    frame = F.delta(SID, 1234, 7, " lantern")
    packer = msgpack.Packer()
    encoded = encode_msgpack(frame)
    results = {
        "positional_msgpack_list_us": per_call_us(lambda: packer.pack([3, SID, 1234, 7, " lantern"])),
        "msgpack_packb_dict_us": per_call_us(lambda: msgpack.packb(frame)),
        "orjson_dumps_dict_us": per_call_us(lambda: orjson.dumps(frame)),
        "stdlib_json_dumps_dict_us": per_call_us(lambda: json.dumps(frame), number=50_000),
        "rtserver_build_and_encode_delta_us": per_call_us(lambda: encode_msgpack(F.delta(SID, 1234, 7, " lantern"))),
        "websockets_frame_serialize_us": per_call_us(
            lambda: Frame(Opcode.BINARY, encoded).serialize(mask=False, extensions=[])
        ),
        "delta_bytes": len(encoded),
    }
    results = {k: round(v, 3) for k, v in results.items()}
    path = write_json("encode", results)
    print(json.dumps(results, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
