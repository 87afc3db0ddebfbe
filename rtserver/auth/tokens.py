"""Short-lived signed user tokens: JWTs with HS256, minted by the app backend for its players.

    header  {"alg": "HS256", "typ": "JWT"}
    claims  sub (the user id, required), exp (unix seconds, required), iat, and optionally
            models [names], personas [texts], ro [session ids this user may watch read-only],
            limits {frames_per_min, tokens_per_min}
    token   b64url(header) "." b64url(claims) "." b64url(HMAC-SHA256(secret, the first two joined by "."))

Any JWT library mints one (docs/deploy.md has a Python and a JS snippet); ``rtserver token mint`` does for
tests. Only HS256 is accepted (never ``none``); the signature is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from ..principal import Principal

HEADER = {"alg": "HS256", "typ": "JWT"}
LIMIT_CLAIMS = ("frames_per_min", "tokens_per_min", "stored_sessions")


class TokenError(Exception):
    """A token that is malformed, wrongly signed or expired (the message says which)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, signing_input: str) -> str:
    return _b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())


def mint(secret: str, user: str, ttl: float, *, now: float, **claims: Any) -> str:
    """A token for ``user`` valid ``ttl`` seconds from ``now``; ``claims``: models, personas, ro, limits."""
    body = {"sub": user, "iat": int(now), "exp": int(now + ttl), **{k: v for k, v in claims.items() if v}}
    signing_input = _b64(json.dumps(HEADER).encode()) + "." + _b64(json.dumps(body).encode())
    return signing_input + "." + _sign(secret, signing_input)


def verify(secret: str, token: str, *, now: float) -> Principal:
    parts = token.split(".")
    if len(parts) != 3 or not secret:
        raise TokenError("not a signed user token")
    try:
        header, claims = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise TokenError("the token is not valid base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise TokenError("only HS256 tokens are accepted")
    if not hmac.compare_digest(_sign(secret, parts[0] + "." + parts[1]), parts[2]):
        raise TokenError("the token's signature is wrong")
    sub, exp = claims.get("sub"), claims.get("exp")
    if not isinstance(sub, str) or not sub or not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise TokenError("the token needs sub (a string) and exp (unix seconds)")
    if exp <= now:
        raise TokenError("the token has expired: get a fresh one")
    return Principal(
        user=sub,
        kind="token",
        expires=float(exp),
        models=_names(claims.get("models")),
        personas=_names(claims.get("personas")),
        ro=_names(claims.get("ro")) or frozenset(),
        limits=_limits(claims.get("limits")),
    )


def _names(value: Any) -> frozenset[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None


def _limits(value: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(
        (k, float(v))
        for k, v in value.items()
        if k in LIMIT_CLAIMS and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    )
