"""The tokens relying parties receive: Security Event Tokens (RFC 8417) carrying CAEP 1.0 and SSF 1.0 events, and
OpenID Connect Back-Channel Logout 1.0 logout tokens. Both are JWTs signed with the IdP's signing keys, so a
receiver verifies them with the same JWKS (`jwks_uri`) as ID tokens, by the header's `kid`.

What a token may say is fixed here and nowhere else (docs/relying-parties.md, "Signals"): the receiver's own
pairwise `sub` (as an `iss_sub` subject, RFC 9493), the event type, when it happened and, for CAEP, who initiated
it in the coarsest terms (`policy` for anything about the card, `user` for the holder's own action). Never a
serial, a MyKey ID, another receiver's identifier, or a reason: CAEP's optional `reason_admin` / `reason_user`
are left out on purpose, because the true reason of a card's revocation can be a death, a move or a court order,
which must not leave the platform.

`typ` tells the two kinds apart, so neither can be replayed as the other or as an ID token: `secevent+jwt`
(RFC 8417 §2.3) and `logout+jwt` (Back-Channel Logout §2.4). A logout token carries no `nonce` (§2.4) and its
`events` member names the back-channel-logout event with an empty object.

The `jti` is derived, not drawn: HMAC of what caused the token, for whom, and which event. A cause processed twice
(the feed is at least once) gives the same `jti`, so a receiver that drops repeated `jti`s sees each signal once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from joserfc import jwt

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
VERIFICATION = SSF + "verification"
BACKCHANNEL_LOGOUT = "http://schemas.openid.net/event/backchannel-logout"

EVENTS_SUPPORTED = (SESSION_REVOKED, CREDENTIAL_CHANGE, VERIFICATION)
SET_TYPE = "secevent+jwt"
LOGOUT_TYPE = "logout+jwt"
LOGOUT_TOKEN_TTL = 120  # seconds: Back-Channel Logout §2.4 recommends a short lifetime (two minutes)

# Credential change types (CAEP 1.0 §3.2) this IdP sends.
CHANGE_UPDATE, CHANGE_REVOKE = "update", "revoke"
INITIATED_BY_POLICY, INITIATED_BY_USER = "policy", "user"


def derived_jti(key: bytes, *parts: str) -> str:
    """A `jti` that the same cause, receiver and event always get (module docstring): 128 bits, base64url."""
    digest = hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def iss_sub(issuer: str, sub: str) -> dict:
    """The subject identifier of RFC 9493 §3.2.5 (`iss_sub`): this IdP and the receiver's pairwise `sub`."""
    return {"format": "iss_sub", "iss": issuer, "sub": sub}


def session_revoked(at: int, initiated_by: str) -> dict:
    """CAEP 1.0 §3.1: the subject's sessions at the receiver must end."""
    return {"event_timestamp": at, "initiating_entity": initiated_by}


def credential_change(at: int, change_type: str) -> dict:
    """CAEP 1.0 §3.2: the holder's card certificate (x509) was renewed (`update`) or revoked (`revoke`); no
    x509_issuer or x509_serial: the serial stays inside the platform."""
    return {"event_timestamp": at, "initiating_entity": INITIATED_BY_POLICY, "credential_type": "x509",
            "change_type": change_type}


def security_event_token(key, kid: str, alg: str, issuer: str, audience: str, jti: str, iat: int,
                         subject: dict, event_type: str, event: dict, txn: str | None = None) -> str:
    """One SET (RFC 8417 §2) for one receiver, one event; the subject is the SSF 1.0 top-level `sub_id`."""
    claims = {"iss": issuer, "aud": audience, "iat": iat, "jti": jti, "sub_id": subject,
              "events": {event_type: event}}
    if txn:
        claims["txn"] = txn
    return jwt.encode({"alg": alg, "kid": kid, "typ": SET_TYPE}, claims, key)


def logout_token(key, kid: str, alg: str, issuer: str, audience: str, jti: str, iat: int, sub: str,
                 sid: str | None = None) -> str:
    """A logout token (Back-Channel Logout 1.0 §2.4): `sub` always (the receiver's pairwise one), `sid` when one
    session at the receiver ends rather than all the holder's sessions there."""
    claims = {"iss": issuer, "aud": audience, "iat": iat, "exp": iat + LOGOUT_TOKEN_TTL, "jti": jti, "sub": sub,
              "events": {BACKCHANNEL_LOGOUT: {}}}
    if sid:
        claims["sid"] = sid
    return jwt.encode({"alg": alg, "kid": kid, "typ": LOGOUT_TYPE}, claims, key)
