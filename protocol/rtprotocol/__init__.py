"""rtserver wire protocol v1, sans-I/O: frames, codecs, validation, sequence numbers and resume.

Both the server and the Python reference client drive this package; neither copies the other.
"""

from .budget import BadFrameBudget
from .codec import Codec, decode_json, decode_msgpack, encode_json, encode_msgpack
from .errors import CLOSE_CODES, ERROR_CODES, ProtocolError
from .frames import (
    FINISH_REASONS,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    SUBPROTOCOLS,
    TURN_ERROR_CODES,
    VERSION,
    Frame,
    Params,
    validate_client_frame,
)
from .sequence import FrameLog, GapError, Resume, SeqTracker
from .textcheck import TextCheck, text_check

__all__ = [
    "BadFrameBudget",
    "CLOSE_CODES",
    "Codec",
    "ERROR_CODES",
    "FINISH_REASONS",
    "Frame",
    "FrameLog",
    "GapError",
    "Params",
    "ProtocolError",
    "Resume",
    "SUBPROTOCOLS",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "SeqTracker",
    "TURN_ERROR_CODES",
    "TextCheck",
    "VERSION",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
    "text_check",
    "validate_client_frame",
]
