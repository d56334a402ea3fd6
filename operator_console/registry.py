"""Operator API tokens: shown once at creation, stored only as SHA-256 hashes, disabled rather than deleted."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets

import redis

from operator_console.keys import OPERATORS
from wire.errors import CodedError

TOKEN_PREFIX = "rvop_"  # noqa: S105 - a prefix, not a secret
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class OperatorError(CodedError, ValueError):
    """An operator token request refused (a bad name, an active operator of that name)."""


def _digest(token: str) -> str:
    # Tokens are 256 random bits: a plain hash is enough, no password stretching needed.
    return hashlib.sha256(token.encode()).hexdigest()


class OperatorRegistry:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def add(self, name: str) -> str:
        """A new operator token; the only time it is ever shown."""
        if not isinstance(name, str) or not NAME.match(name):
            raise OperatorError("invalid_operator_name", "An operator name is 1–64 letters, digits or . _ @ -.")
        # A disabled name may be added again: that is how an operator's token is rotated.
        if any(record["name"] == name and not record["disabled"] for record in self.list()):
            raise OperatorError("operator_exists", "An active operator with that name exists; disable it first.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = {"name": name, "created_at": dt.datetime.now(dt.UTC).isoformat(), "disabled": False}
        self.redis.hset(OPERATORS, _digest(token), json.dumps(record))
        return token

    def authenticate(self, token: str | None) -> str | None:
        """The operator's name for a valid, enabled token; else None."""
        found = self.identify(token)
        return found[0] if found else None

    def identify(self, token: str | None) -> tuple[str, str] | None:
        """(name, token digest) for a valid, enabled token; the console's sessions keep the digest so that
        disabling the token ends them."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        digest = _digest(token)
        name = self.active(digest)
        return (name, digest) if name else None

    def active(self, digest: str) -> str | None:
        """The operator's name while the token with this digest is enabled; else None."""
        raw = self.redis.hget(OPERATORS, digest)
        if raw is None:
            return None
        record = json.loads(raw)
        return None if record["disabled"] else record["name"]

    def list(self) -> list[dict]:
        return sorted((json.loads(raw) for raw in self.redis.hvals(OPERATORS)), key=lambda r: r["created_at"])

    def disable(self, name: str) -> bool:
        changed = False
        for digest, raw in self.redis.hgetall(OPERATORS).items():
            record = json.loads(raw)
            if record["name"] == name and not record["disabled"]:
                record["disabled"] = True
                self.redis.hset(OPERATORS, digest, json.dumps(record))
                changed = True
        return changed
