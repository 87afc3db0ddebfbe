"""Checking a credential, and deciding at start-up whether credentials are required (secure by default).

``auth = auto`` (the default), as Redis's protected mode and Jupyter's token do it:
    loopback bind, nothing configured        auth off (development)
    any other bind, nothing configured       an API key is created in the data dir and logged once; auth on
    keys or a token secret configured        auth on
``auth = on`` always requires a credential (creating a key if there is none); ``auth = off`` never does (a
credential given anyway is still checked, so users keep their identity).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog
from rtprotocol import errors as E

from ..errors import Refused
from ..principal import ANONYMOUS, Principal
from . import keys as K
from . import tokens as T

log = structlog.get_logger("rtserver.auth")

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def unauthenticated(why: str) -> Refused:
    return Refused(why, code="unauthenticated", close=E.CLOSE_UNAUTHENTICATED)


class Authenticator:
    def __init__(self, keys: K.KeyStore, secret: str, *, required: bool, wall: Callable[[], float] = time.time) -> None:
        self.keys, self.secret, self.required, self.wall = keys, secret, required, wall

    def check(self, credential: str) -> Principal:
        """The principal this credential proves; raises ``Refused`` (4001, or 4003 for a revoked key)."""
        if not credential:
            if self.required:
                raise unauthenticated("this server needs a credential: send hello.token (or an Authorization header)")
            return ANONYMOUS
        if K.split(credential) is not None:
            try:
                kid = self.keys.check(credential)
            except LookupError as exc:
                raise unauthenticated(f"{exc}") from None
            except PermissionError as exc:
                raise Refused(str(exc), code="forbidden", close=E.CLOSE_FORBIDDEN) from None
            return Principal(user=f"key:{kid}", kind="key", key_id=kid)
        if not self.required and not self.secret:
            return ANONYMOUS  # auth off and no secret to check a user token with: a development client's token
        try:
            return T.verify(self.secret, credential, now=self.wall())
        except T.TokenError as exc:
            raise unauthenticated(str(exc)) from None

    def still_valid(self, p: Principal) -> bool:
        return not p.expires or p.expires > self.wall()


def setup(mode: str, host: str, data_dir: Path, secret: str) -> Authenticator:
    """The authenticator the settings ask for; creates (and logs, once) the first key of a public server."""
    keys = K.KeyStore(data_dir)
    configured = bool(keys.active or secret)
    if mode == "off" or (mode == "auto" and not configured and host in LOOPBACK):
        log.info("auth", required=False, why="auth = off" if mode == "off" else "loopback bind, nothing configured")
        return Authenticator(keys, secret, required=False)
    if not configured:
        key = keys.create("default")
        log.warning(
            "api_key_created",
            key=key,
            file=str(keys.path),
            note="logged this once only: clients send it in hello.token or 'Authorization: Bearer'; "
            "manage keys with `rtserver keys create|list|revoke`",
        )
    log.info("auth", required=True, keys=len(keys.active), user_tokens=bool(secret))
    return Authenticator(keys, secret, required=True)
