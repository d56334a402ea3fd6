"""A JWT from outside, checked for shape before any JOSE library reads it.

joserfc and Authlib decode a JWT's header and payload with Python's json, which a few kilobytes of `[[[[` turn
into a RecursionError — a 500 instead of the documented OAuth error. So a client assertion, an ID token hint or a
DPoP proof is first held to `check_compact_jwt`: a bounded compact JWS whose header and payload are JSON objects
within wire.json_input's bounds. Its own module, so that the provider, the endpoints and idp/oidc/dpop.py share
it without importing each other.
"""

from __future__ import annotations

import base64
import binascii

from wire.json_input import loads as json_loads

MAX_COMPACT_JWT = 16 * 1024  # a client assertion, a DPoP proof or an ID token of ours is well under 4 KiB


def check_compact_jwt(token) -> None:
    """Raise ValueError unless `token` is a compact JWS (RFC 7515 §7.1) of bounded size whose header and payload
    are JSON objects within wire.json_input's depth and size bounds. The signature is not checked here."""
    if not isinstance(token, str) or len(token) > MAX_COMPACT_JWT or token.count(".") != 2:
        raise ValueError("not a compact JWS")
    for part in token.split(".")[:2]:
        try:
            decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("not base64url") from None
        if not isinstance(json_loads(decoded), dict):  # JSONInputError is a ValueError
            raise ValueError("not a JSON object")
