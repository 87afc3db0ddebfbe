"""Server-side replay recordings (settings ``record_dir`` and ``record_sessions``): a connection records its
frames, both ways, once it attaches to a chosen session (``*``: every connection, from its ``hello``), into a file
of its own under ``record_dir`` that ``rtserver replay run`` plays back. Frames before the attach are not in it;
a recording of a chosen existing session starts from its attach, which replays as an attach. Costs nothing on
connections not recorded (``of`` returns None)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from rtprotocol import decode_msgpack
from rtprotocol.recording import Recorder

from ..settings import Settings

_files = itertools.count(1)


class ServerRecording:
    def __init__(self, folder: Path, chosen: frozenset[str]) -> None:
        self.folder, self.chosen = folder, chosen
        self.recorder: Recorder | None = None
        self._held: list[tuple[bool, dict[str, Any]]] = []  # frames before it knew whether to record

    @classmethod
    def of(cls, settings: Settings) -> ServerRecording | None:
        if not settings.record_dir or not settings.record_sessions.strip():
            return None
        chosen = frozenset(s.strip() for s in settings.record_sessions.split(",") if s.strip())
        r = cls(Path(settings.record_dir), chosen)
        if "*" in chosen:
            r._start()
        return r

    def _start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{next(_files)}.jsonl"
        self.recorder = Recorder.to_file(self.folder / name, sub="server")
        self.recorder.connection()

    def attached(self, sid: str) -> None:
        if self.recorder is None and sid in self.chosen:
            self._start()
            for sent, frame in self._held[-2:]:  # the attach frame and its answer, when they came just before
                self._log(sent, frame)
        self._held.clear()

    def received(self, frame: Any) -> None:
        """A frame from the client (as decoded; recorded whether or not it is valid)."""
        if isinstance(frame, dict):
            self._log(True, frame)

    def sent(self, data: bytes) -> None:
        self._log(False, decode_msgpack(data))

    def _log(self, from_client: bool, frame: dict[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder.log(0, from_client, frame)
        else:
            self._held = [*self._held[-1:], (from_client, frame)]

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
