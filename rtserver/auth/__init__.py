"""Credentials: server-side API keys (``keys``) and signed user tokens (``tokens``), checked by one
``Authenticator`` that start-up builds with ``setup`` (secure by default)."""

from .authenticator import Authenticator, setup

__all__ = ["Authenticator", "setup"]
