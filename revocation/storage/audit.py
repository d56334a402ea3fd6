"""The append-only audit log: who changed what, when, and through which event (a Redis Stream).

Entries name certificates by issuer and serial, because operators act by serial; application logs never do.
"""

from __future__ import annotations

import datetime as dt
import json

import redis

from revocation.storage.keys import AUDIT_STREAM


class AuditLog:
    def __init__(self, client: redis.Redis, stream: str = AUDIT_STREAM):
        self.redis = client
        self.stream = stream

    def record(self, actor: str, action: str, detail: dict, event_id: str | None = None) -> str:
        entry = {"at": dt.datetime.now(dt.UTC).isoformat(), "actor": actor, "action": action,
                 "event_id": event_id or "", "detail": json.dumps(detail, separators=(",", ":"), sort_keys=True)}
        entry_id = self.redis.xadd(self.stream, entry)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def read(self, count: int = 50, before: str | None = None) -> list[dict]:
        """The newest entries first; with `before` (an entry id), the page of older entries that follows it."""
        if before and all(part.isdigit() and int(part) == 0 for part in before.split("-")):
            return []  # nothing is older than the first possible id (and Redis refuses the range "(0-0")
        newest = f"({before}" if before else "+"  # "(": exclusive range, so pages do not overlap
        return [_entry(entry_id, fields)
                for entry_id, fields in self.redis.xrevrange(self.stream, max=newest, count=count)]

    def for_certificate(self, issuer: str, serial: int, scan: int = 10_000) -> list[dict]:
        """Entries that name this certificate, newest first (bounded scan of recent history)."""
        wanted = f"{issuer}:{serial:X}"
        return [entry for entry in self.read(scan) if entry["detail"].get("certificate") == wanted]


def _entry(entry_id, fields: dict) -> dict:
    text = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in fields.items()}
    return {"id": entry_id.decode() if isinstance(entry_id, bytes) else entry_id, "at": text["at"],
            "actor": text["actor"], "action": text["action"], "event_id": text["event_id"] or None,
            "detail": json.loads(text["detail"])}
