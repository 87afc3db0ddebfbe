"""rtserver: a real-time conversation server streaming replies from a llama.cpp model over WebSocket."""

__version__ = "0.1.0"
