"""Python reference client for rtserver (protocol v1)."""

from .backoff import Backoff
from .client import Client, ConnectionLost, RtClientError, Session, TextMismatch, Turn, TurnResult

__all__ = ["Backoff", "Client", "ConnectionLost", "RtClientError", "Session", "TextMismatch", "Turn", "TurnResult"]
