"""Who sent a request: the peer's address, or the client a trusted proxy names.

`X-Forwarded-For` is a header anyone can send; believed from everyone, it would let a
caller write any address into the audit log or a tracking hit. It is read only when the
peer is one of THANKLY_TRUSTED_PROXIES, right to left, past the proxies themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from fastapi import Request

Networks = Sequence[IPv4Network | IPv6Network]


def _trusted(address: str, proxies: Networks) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Request, proxies: Networks) -> str | None:
    """The address to record for REQUEST: the peer itself unless it is a trusted proxy;
    then the last address in X-Forwarded-For that is not a trusted proxy (the ones left
    of it were written by the client and prove nothing)."""
    peer = request.client.host if request.client else None
    if peer is None or not _trusted(peer, proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
    ]
    client = peer
    for hop in reversed(hops):
        try:
            client = str(ip_address(hop))
        except ValueError:
            break  # garbage in the chain: stop at the last address a proxy vouched for
        if not _trusted(client, proxies):
            break
    return client
