"""Engines behind one interface (``base.Engine``): llama.cpp for serving, a scripted one for protocol tests."""

from .base import Engine, Event, Finish, Message, Request, Token

__all__ = ["Engine", "Event", "Finish", "Message", "Request", "Token"]
