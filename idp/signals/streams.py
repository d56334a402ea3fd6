"""SSF event streams (SSF 1.0 §8.1): one per relying party, created, read, updated and deleted by the relying
party itself, authenticated as the OAuth client it already is.

How a receiver authenticates: it asks the token endpoint for an access token with the `ssf` scope by the
client_credentials grant (RFC 6749 §4.4), authenticating there exactly as it does for its code exchanges
(private_key_jwt or client_secret_basic), and sends it as a Bearer token (RFC 6750) to the stream endpoints.
That is SSF's own authorization scheme (`urn:ietf:rfc:6749` in the transmitter metadata), it works for a JSON
body and a GET alike (a client assertion travels only in a form body), and every check of the client's
credentials stays in one place, the token endpoint. The token names the client; a stream is found by the
client's id, so one client can never reach another's stream, whatever `stream_id` it sends.

Only the fields a receiver may set are taken from a request (`events_requested`, `delivery`, `description`);
`iss`, `aud`, `events_supported` and `events_delivered` are the transmitter's (§8.1.1). A push endpoint must be
https (plain http on the loopback address in development only); a poll stream's `endpoint_url` is the
transmitter's poll URL for that stream.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import redis

from idp import keys
from idp.signals.tokens import EVENTS_SUPPORTED
from wire.errors import CodedError
from wire.fetch import LOOPBACK_HOSTS

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
STATUSES = ("enabled", "paused", "disabled")
SSF_SCOPE = "ssf"
MAX_DESCRIPTION = 200
MAX_AUTHORIZATION_HEADER = 1024


class StreamError(CodedError):
    """A stream request refused: `code` is stable (docs/relying-parties.md), `status` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(code, message)
        self.status = status


@dataclass
class Stream:
    stream_id: str
    client_id: str
    method: str
    endpoint_url: str | None  # push: the receiver's; poll: None (the transmitter's URL is derived)
    authorization_header: str | None = field(default=None, repr=False)  # sent with each push, never shown back
    events_requested: list[str] = field(default_factory=list)
    description: str | None = None
    status: str = "enabled"
    reason: str | None = None
    created_at: int = 0

    @property
    def events_delivered(self) -> list[str]:
        """Requested ∩ supported (§8.1.1); nothing requested means every event this transmitter sends."""
        requested = [e for e in self.events_requested if e in EVENTS_SUPPORTED]
        return requested if self.events_requested else list(EVENTS_SUPPORTED)

    def wants(self, event_type: str) -> bool:
        """Queue this event? Not on a disabled stream; a paused one keeps its events until enabled (SSF §8.1.2)."""
        return self.status != "disabled" and event_type in self.events_delivered

    def as_config(self, issuer: str) -> dict:
        """The stream configuration as SSF §8.1.1 shows it to its receiver."""
        delivery = {"method": self.method,
                    "endpoint_url": self.endpoint_url if self.method == PUSH else f"{issuer}/ssf/poll/{self.stream_id}"}
        config = {"stream_id": self.stream_id, "iss": issuer, "aud": self.client_id,
                  "events_supported": list(EVENTS_SUPPORTED), "events_requested": self.events_requested,
                  "events_delivered": self.events_delivered, "delivery": delivery, "min_verification_interval": 0}
        if self.description:
            config["description"] = self.description
        return config


class StreamStore:
    def __init__(self, client: redis.Redis, development: bool):
        self.redis = client
        self.development = development

    # --- access tokens with the `ssf` scope -----------------------------------------------------------------

    def issue_token(self, client_id: str, value: str, ttl: int) -> None:
        self.redis.set(keys.ssf_token(_digest(value)), client_id, ex=ttl)

    def client_of_token(self, value: str | None) -> str | None:
        if not value or len(value) > 100:
            return None
        found = self.redis.get(keys.ssf_token(_digest(value)))
        return found.decode() if found else None

    # --- streams --------------------------------------------------------------------------------------------

    def get(self, client_id: str) -> Stream | None:
        raw = self.redis.hget(keys.SSF_STREAMS, client_id)
        return Stream(**json.loads(raw)) if raw else None

    def all(self) -> dict[str, Stream]:
        """Every stream by client id (one per relying party: a bounded number, not per holder)."""
        return {k.decode(): Stream(**json.loads(v)) for k, v in self.redis.hgetall(keys.SSF_STREAMS).items()}

    def create(self, client_id: str, body: dict, now: dt.datetime) -> Stream:
        if self.get(client_id) is not None:
            raise StreamError("stream_exists", "This client already has a stream; read, update or delete it "
                              "(one stream per relying party).", 409)
        stream = Stream(stream_id=secrets.token_urlsafe(16), client_id=client_id, method=POLL, endpoint_url=None,
                        created_at=int(now.timestamp()))
        self._apply(stream, body, replace=True)
        if not self.redis.hsetnx(keys.SSF_STREAMS, client_id, json.dumps(asdict(stream))):
            raise StreamError("stream_exists", "This client already has a stream.", 409)
        return stream

    def update(self, client_id: str, stream_id, body: dict, replace: bool) -> Stream:
        stream = self.require(client_id, stream_id)
        self._apply(stream, body, replace)
        self._save(stream)
        return stream

    def set_status(self, client_id: str, stream_id, status, reason) -> Stream:
        stream = self.require(client_id, stream_id)
        if status not in STATUSES:
            raise StreamError("invalid_request", f"status is one of {', '.join(STATUSES)}.")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_DESCRIPTION):
            raise StreamError("invalid_request", f"reason is a string of at most {MAX_DESCRIPTION} characters.")
        stream.status, stream.reason = status, reason
        self._save(stream)
        return stream

    def delete(self, client_id: str, stream_id) -> Stream:
        stream = self.require(client_id, stream_id)
        self.redis.hdel(keys.SSF_STREAMS, client_id)
        return stream

    def require(self, client_id: str, stream_id) -> Stream:
        """The client's own stream, if `stream_id` names it; another client's id answers exactly like an unknown
        one (404), so a client cannot even learn which stream ids exist."""
        stream = self.get(client_id)
        if stream is None or not isinstance(stream_id, str) or stream_id != stream.stream_id:
            raise StreamError("stream_not_found", "There is no stream with this stream_id for this client.", 404)
        return stream

    def _save(self, stream: Stream) -> None:
        self.redis.hset(keys.SSF_STREAMS, stream.client_id, json.dumps(asdict(stream)))

    def _apply(self, stream: Stream, body: dict, replace: bool) -> None:
        """Take the receiver-settable fields of `body` (all of them when `replace`, PUT; those present, PATCH)."""
        unknown = set(body) - {"stream_id", "iss", "aud", "events_supported", "events_requested",
                               "events_delivered", "delivery", "description", "min_verification_interval"}
        if unknown:
            raise StreamError("invalid_request", f"Unknown stream member(s): {', '.join(sorted(unknown))}.")
        if replace or "events_requested" in body:
            events = body.get("events_requested", [])
            if not isinstance(events, list) or not all(isinstance(e, str) and len(e) < 200 for e in events) \
                    or len(events) > 20:
                raise StreamError("invalid_request", "events_requested is a list of event type URIs.")
            stream.events_requested = list(dict.fromkeys(events))
        if replace or "description" in body:
            description = body.get("description")
            if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
                raise StreamError("invalid_request", f"description is at most {MAX_DESCRIPTION} characters.")
            stream.description = description
        if replace or "delivery" in body:
            self._delivery(stream, body.get("delivery") or {"method": POLL})

    def _delivery(self, stream: Stream, delivery) -> None:
        if not isinstance(delivery, dict):
            raise StreamError("invalid_request", "delivery is an object with a method.")
        method = delivery.get("method")
        if method == POLL:
            stream.method, stream.endpoint_url, stream.authorization_header = POLL, None, None
            return
        if method != PUSH:
            raise StreamError("invalid_request", f"delivery.method is {PUSH} (push) or {POLL} (poll).")
        url = delivery.get("endpoint_url")
        if not isinstance(url, str) or len(url) > 2000 or not self._push_url_allowed(url):
            raise StreamError("invalid_request", "delivery.endpoint_url must be an https URL (plain http only on "
                              "the loopback address, in development).")
        header = delivery.get("authorization_header")
        if header is not None and (not isinstance(header, str) or len(header) > MAX_AUTHORIZATION_HEADER
                                   or any(c in header for c in "\r\n")):
            raise StreamError("invalid_request", "delivery.authorization_header is one header value.")
        stream.method, stream.endpoint_url, stream.authorization_header = PUSH, url, header

    def _push_url_allowed(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            return False
        if parts.fragment or not parts.hostname:
            return False
        return parts.scheme == "https" or (parts.scheme == "http" and self.development
                                           and parts.hostname in LOOPBACK_HOSTS)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
