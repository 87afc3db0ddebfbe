"""Connection filter: a new session is refused with ``busy`` at once while the node sheds (the engine's queue is
full, or memory is short); the decision is the admission's, the one place that decides (``Admission``)."""

from __future__ import annotations

from typing import Any

from ..admission import Admission
from .base import Client, NoConnection


class ShedFilter(NoConnection):
    def __init__(self, per_model: dict[str, Admission]) -> None:
        self.per_model = per_model

    def frame(self, frame: dict[str, Any], client: Client) -> None:
        if frame["t"] == "session.open" and not frame.get("sid"):
            admission = self.per_model.get(frame.get("model") or "default")
            if admission is not None:  # (an unknown model is answered by the session layer)
                admission.admit_session()
