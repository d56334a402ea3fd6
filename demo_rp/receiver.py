"""Example Shop as a signals receiver: it subscribes to the IdP's SSF stream and takes back-channel logout tokens,
so a holder's session here ends when their card is lost or revoked, or when they log out at the IdP.

What any relying party does, with ordinary libraries (requests, joserfc):
- subscribe: an access token with the `ssf` scope by client_credentials at the token endpoint (the client's own
  credentials), then create the push stream at the transmitter's `configuration_endpoint` — or, when the
  stream already exists (a restart), point its delivery at this process again (PATCH), with a fresh secret for
  the Authorization header the IdP sends with each push;
- verify each token before believing it: signature by the IdP's JWKS (refetched once for an unknown `kid`),
  `typ` (`secevent+jwt` or `logout+jwt`), `iss`, `aud` (our client id), `iat` not in the future, and a `jti` seen
  before is dropped (a redelivery: the IdP delivers at least once);
- act: a `session-revoked` event or a logout token ends every local session of its `sub` that began before it
  (a logout token with `sid` only that session).
Sessions are Flask's signed cookies, so "ending" one is remembering, per `sub` (and per `sid`), from when on a
session no longer counts; each request checks its session against that.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger(__name__)

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
BACKCHANNEL_LOGOUT = "http://schemas.openid.net/event/backchannel-logout"
PUSH = "urn:ietf:rfc:8935"
SEEN_JTIS = 100_000
CLOCK_SKEW = 60


class TokenRefused(Exception):
    """A token this receiver does not believe; `err` is RFC 8935 §2.3's code."""

    def __init__(self, err: str, description: str):
        super().__init__(description)
        self.err, self.description = err, description


class SignalsReceiver:
    def __init__(self, issuer: str, client_id: str, client_secret: str, base_url: str):
        self.issuer, self.client_id, self.client_secret, self.base_url = issuer, client_id, client_secret, base_url
        self.push_secret = secrets.token_urlsafe(32)
        self.subscribed = threading.Event()
        self._keys: KeySet | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._ended_subs: dict[str, float] = {}  # sub → sessions that began before this time are over
        self._ended_sids: set[str] = set()
        self._lock = threading.Lock()

    # --- subscribing ----------------------------------------------------------------------------------------

    def subscribe_in_background(self, attempts: int = 60) -> threading.Thread:
        """Subscribe once the IdP answers (bounded: `attempts` tries, 1 s apart)."""
        def run():
            for _ in range(attempts):
                try:
                    self.subscribe()
                    return
                except (requests.RequestException, KeyError, ValueError) as exc:
                    log.info("demo rp: not subscribed yet (%s); trying again", exc.__class__.__name__)
                    time.sleep(1)
        thread = threading.Thread(target=run, daemon=True, name="demo rp subscription")
        thread.start()
        return thread

    def subscribe(self) -> None:
        metadata = requests.get(f"{self.issuer}/.well-known/ssf-configuration", timeout=10).json()
        discovery = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()
        answer = requests.post(discovery["token_endpoint"], data={"grant_type": "client_credentials", "scope": "ssf"},
                               auth=(self.client_id, self.client_secret), timeout=10)
        answer.raise_for_status()
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        delivery = {"method": PUSH, "endpoint_url": f"{self.base_url}/ssf/events",
                    "authorization_header": f"Bearer {self.push_secret}"}
        streams = metadata["configuration_endpoint"]
        existing = requests.get(streams, headers=headers, timeout=10)
        existing.raise_for_status()
        if existing.json():
            stream_id = existing.json()[0]["stream_id"]
            done = requests.patch(streams, json={"stream_id": stream_id, "delivery": delivery}, headers=headers,
                                  timeout=10)
        else:
            done = requests.post(streams, json={"delivery": delivery, "events_requested": [SESSION_REVOKED],
                                                "description": "Example Shop"}, headers=headers, timeout=10)
        done.raise_for_status()
        self.subscribed.set()

    # --- verifying ------------------------------------------------------------------------------------------

    def verify(self, token: str, typ: str) -> dict:
        """The claims of a token this receiver believes; TokenRefused otherwise."""
        try:
            decoded = jwt.decode(token, self._key_set(token), algorithms=["RS256", "ES256"])
        except (JoseError, ValueError):
            raise TokenRefused("invalid_key", "The signature does not verify with the issuer's keys.") from None
        claims = decoded.claims
        if decoded.header.get("typ") != typ:
            raise TokenRefused("invalid_request", f"The token is not a {typ}.")
        if claims.get("iss") != self.issuer:
            raise TokenRefused("invalid_issuer", "The token comes from another issuer.")
        audience = claims.get("aud")
        if audience != self.client_id and not (isinstance(audience, list) and self.client_id in audience):
            raise TokenRefused("invalid_audience", "The token is for another audience.")
        iat = claims.get("iat")
        if not isinstance(iat, int) or iat > time.time() + CLOCK_SKEW:
            raise TokenRefused("invalid_request", "The token's iat is missing or in the future.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise TokenRefused("invalid_request", "The token has no jti.")
        return claims

    def _key_set(self, token: str) -> KeySet:
        kid = _kid(token)
        if self._keys is None or (kid and not any(key.kid == kid for key in self._keys.keys)):
            discovery = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()
            self._keys = KeySet.import_key_set(requests.get(discovery["jwks_uri"], timeout=10).json())
        return self._keys

    def first_time(self, jti: str) -> bool:
        """False for a jti seen before (a redelivery); remembers the last SEEN_JTIS."""
        with self._lock:
            if jti in self._seen:
                return False
            self._seen[jti] = None
            while len(self._seen) > SEEN_JTIS:
                self._seen.popitem(last=False)
            return True

    # --- acting ---------------------------------------------------------------------------------------------

    def take_set(self, token: str) -> None:
        claims = self.verify(token, "secevent+jwt")
        if not self.first_time(claims["jti"]):
            return
        subject = claims.get("sub_id") or {}
        event = (claims.get("events") or {}).get(SESSION_REVOKED)
        if event is not None and subject.get("format") == "iss_sub" and subject.get("iss") == self.issuer:
            self.end(subject.get("sub"), None)

    def take_logout_token(self, token: str) -> None:
        claims = self.verify(token, "logout+jwt")
        if BACKCHANNEL_LOGOUT not in (claims.get("events") or {}) or "nonce" in claims:
            raise TokenRefused("invalid_request", "This is not a logout token.")
        if not claims.get("sub") and not claims.get("sid"):
            raise TokenRefused("invalid_request", "A logout token names a sub or a sid.")
        if self.first_time(claims["jti"]):
            self.end(claims.get("sub") if not claims.get("sid") else None, claims.get("sid"))

    def end(self, sub: str | None, sid: str | None) -> None:
        with self._lock:
            if sub:
                self._ended_subs[sub] = time.time()
            if sid:
                self._ended_sids.add(sid)

    def session_over(self, sub: str | None, sid: str | None, began: float) -> bool:
        with self._lock:
            return (sid is not None and sid in self._ended_sids) or began <= self._ended_subs.get(sub, 0.0)


def _kid(token: str) -> str | None:
    """The header's kid, read before verification only to pick the key (the signature is checked after)."""
    try:
        head = token.split(".", 1)[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("kid")
    except (ValueError, AttributeError):
        return None
