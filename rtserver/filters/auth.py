"""Connection filter: who the client is. The credential travels in ``hello.token`` (browsers cannot set headers
on a WebSocket) or in ``Authorization: Bearer`` (backends); nothing but ``hello`` is carried out before it is
checked (the protocol core answers ``not_ready``). A bad credential is answered ``unauthenticated`` and the
connection closed with 4001 (4003: a revoked key); a token that expires while connected closes it the same way.
A token's ``models``/``personas`` claims bound what its sessions may use (``forbidden``, connection open). A later
``hello`` with a fresh token of the same user renews the credential on a live connection; another user's is
refused (``forbidden``): a connection keeps its user."""

from __future__ import annotations

from typing import Any

from rtprotocol import errors as E

from ..auth.authenticator import Authenticator, unauthenticated
from ..errors import ClientError, Refused
from .base import Client, NoConnection, Refusal, Report


class AuthFilter(NoConnection):
    def __init__(self, auth: Authenticator, report: Report) -> None:
        self.auth = auth
        self.report = report

    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None:
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return None
        try:
            client.principal = self.auth.check(credential.strip())
        except Refused as exc:
            self.report("auth_failed", client, exc.message)
            return Refusal(403 if exc.close == E.CLOSE_FORBIDDEN else 401, exc.message + "\n")
        return None

    def frame(self, frame: dict[str, Any], client: Client) -> None:
        kind = frame["t"]
        if kind == "hello":
            self._hello(frame.get("token"), client)
            return
        p = client.principal
        if p is None:
            return  # before hello: the core refuses everything but ping
        if p.expires and not self.auth.still_valid(p):
            self.report("auth_failed", client, "token expired")
            raise unauthenticated("the token expired: reconnect with a fresh one")
        if kind == "session.open" and not frame.get("sid"):
            if p.models is not None and (frame.get("model") or "default") not in p.models:
                raise ClientError("the token does not allow this model", code="forbidden")
            if p.personas is not None and frame.get("persona") not in p.personas:
                raise ClientError("the token does not allow this persona", code="forbidden")

    def _hello(self, token: Any, client: Client) -> None:
        if token is None and client.principal is not None:
            return  # authenticated by its Authorization header, or by an earlier hello
        try:
            principal = self.auth.check(token or "")
        except Refused as exc:
            self.report("auth_failed", client, exc.message)
            raise
        if client.principal is not None and principal.user != client.principal.user:
            raise ClientError("a connection keeps its user: open another connection for another one", code="forbidden")
        client.principal = principal  # a later hello with a fresh token of the same user renews it
