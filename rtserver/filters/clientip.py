"""Connection filter: the client's address. It is the socket's peer, unless the peer is a configured trusted
proxy: then it is the last address in ``X-Forwarded-For`` that is not itself a trusted proxy (what the proxy
nearest to us saw). Headers from anyone else are ignored, so a client cannot choose its own address."""

from __future__ import annotations

import ipaddress

from .base import Client, NoConnection, Refusal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip())


class ClientIpFilter(NoConnection):
    def __init__(self, trusted: tuple[Network, ...]) -> None:
        self.trusted = trusted

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None:
        client.ip = client.peer
        if not self.trusted or not self._trusted(client.peer):
            return None
        for hop in reversed(headers.get("x-forwarded-for", "").split(",")):
            hop = hop.strip()
            if not hop:
                continue
            client.ip = hop
            if not self._trusted(hop):
                break
        return None
