"""Pairwise subject identifiers (OIDC Core §8.1): one `sub` per person per relying-party sector.

`sub = base64url(HMAC-SHA256(secret, sector ‖ 0x00 ‖ account id))`, without padding: the same person at the same
sector always gets the same value; at two sectors, two values that nobody without the secret can link, as the
My Number system's 機関別符号 differ per agency (docs/jpki-profile.md §5).

Deliberate deviation: §8.1's example hashes the sector with the OP's "local account id", and the obvious
candidate here would be the MyKey ID, the account identifier the holder knows. We key on the internal, immutable,
never-shown account id instead, because the MyKey ID is neither stable nor owned for good (docs/jpki-profile.md
§5): the holder may change it or give it up. Keyed on it, every relying party would see a stranger after a change,
and worse, whoever later took a released ID would *become* its former holder at every site. The account id survives
renewals, ID changes and give-ups, so relying parties never notice any of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit


def pairwise_subject(secret: bytes, sector: str, account_id: str) -> str:
    """The `sub` that relying parties of `sector` see for this account."""
    if not sector or not account_id:
        raise ValueError("A pairwise subject needs a sector and an account id.")
    # Host names never contain NUL, so the split between the two inputs is unambiguous. Hosts are case-insensitive.
    message = sector.lower().encode() + b"\x00" + account_id.encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sector_of(redirect_uris: Iterable[str], sector_identifier_uri: str | None = None) -> str:
    """The sector identifier of a client (OIDC Core §8.1): the host of its sector_identifier_uri, or else the one
    host that all its redirect URIs share.

    This does not fetch the sector_identifier_uri: the client registry (idp/oidc/clients.py) fetches it at registration
    and refuses a client whose redirect URIs are not all listed there, before this trusts a shared sector.
    """
    if sector_identifier_uri:
        return _host(sector_identifier_uri, "The sector_identifier_uri")
    hosts = {_host(uri, "A redirect URI") for uri in redirect_uris}
    if not hosts:
        raise ValueError("A client needs at least one redirect URI to have a sector.")
    if len(hosts) > 1:
        raise ValueError(f"The redirect URIs use several hosts ({', '.join(sorted(hosts))}); register a "
                         "sector_identifier_uri to say which sector they share (OIDC Core §8.1).")
    return hosts.pop()


def _host(uri: str, what: str) -> str:
    host = urlsplit(uri).hostname  # lower-cased, without port or user info
    if not host:
        raise ValueError(f"{what} has no host: {uri!r}.")
    return host
