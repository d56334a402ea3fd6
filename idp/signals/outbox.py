"""Outboxes: the signed tokens waiting for one receiver, in a Redis stream each, oldest first.

One outbox per receiver and kind: `ssf:<client_id>` (SETs of the client's SSF stream, pushed or polled) and
`bcl:<client_id>` (logout tokens for its `backchannel_logout_uri`). An entry is deleted only once the receiver
accepted it (a push answered 2xx, a poll acknowledged it), so tokens survive a worker's restart and a receiver's
outage: at least once. A receiver's tokens leave in queue order, which keeps them in order per subject.

Entry fields: `t` the token, `j` its jti, `k` the event's short name (for the operator), `q` when it was queued
(epoch milliseconds: the latency measure of bench/signals.py).

Dead letters: a token the receiver refused (HTTP 400 with an RFC 8935 `err`, or a poll's setErrs) or that could
not be delivered within the bounded number of tries goes to one capped stream, with the client id, jti, event
name, a stable code and the number of tries — never the token itself (it names the holder's pairwise `sub`), so
the operator console can show it to any operator.
"""

from __future__ import annotations

import datetime as dt
import time

import redis

from idp import keys

DEAD_LETTERS_MAXLEN = 100_000
SCAN_LIMIT = 1000  # entries looked at to match a poll's acknowledgements


def now_ms() -> int:
    return int(time.time() * 1000)


def _when(entry_id: str) -> str:
    moment = dt.datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, dt.UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Outboxes:
    def __init__(self, client: redis.Redis, maxlen: int):
        self.redis = client
        self.maxlen = maxlen

    def put(self, queued: list[tuple[str, str, str, str]]) -> None:
        """Queue (outbox, jti, event name, token) in order, in one round trip."""
        if not queued:
            return
        pipe = self.redis.pipeline(transaction=False)
        stamp = now_ms()
        for name, jti, event, token in queued:
            pipe.xadd(keys.outbox(name), {"t": token, "j": jti, "k": event, "q": stamp}, maxlen=self.maxlen,
                      approximate=True)
        pipe.execute()

    def head(self, name: str, count: int = 1) -> list[tuple[str, dict]]:
        """The oldest `count` entries: (entry id, fields as text)."""
        return [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
                for entry_id, fields in self.redis.xrange(keys.outbox(name), count=count)]

    def wait(self, name: str, after: str, block_ms: int) -> bool:
        """Block up to `block_ms` for an entry newer than `after` ('0-0': any); whether one is there."""
        answer = self.redis.xread({keys.outbox(name): after}, count=1, block=block_ms)
        return bool(answer)

    def delivered(self, name: str, entry_ids: list[str]) -> None:
        """Delete accepted entries, and the head's tries with them (the next head starts afresh)."""
        if entry_ids:
            pipe = self.redis.pipeline(transaction=True)  # one slot: the outbox and its state
            pipe.xdel(keys.outbox(name), *entry_ids)
            pipe.delete(keys.outbox_state(name))
            pipe.execute()

    def length(self, name: str) -> int:
        return self.redis.xlen(keys.outbox(name))

    def drop(self, name: str) -> None:
        """Forget an outbox whose stream was deleted."""
        self.redis.delete(keys.outbox(name), keys.outbox_state(name))

    # --- tries of the head entry ------------------------------------------------------------------------

    def state(self, name: str) -> dict:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(keys.outbox_state(name)).items()}

    def failed(self, name: str, entry_id: str, attempts: int, next_at: float, code: str) -> None:
        self.redis.hset(keys.outbox_state(name), mapping={"entry": entry_id, "attempts": attempts,
                                                          "next_at": f"{next_at:.3f}", "last_error": code})

    # --- dead letters ---------------------------------------------------------------------------------------

    def dead_letter(self, name: str, entry_id: str, fields: dict, code: str, attempts: int) -> None:
        """Move one entry to the dead letters: the record first, then the removal (a crash between the two
        leaves the entry to be tried again, never lost)."""
        kind, _, client_id = name.partition(":")
        self.redis.xadd(keys.SIGNALS_DEAD_LETTERS, {"client_id": client_id, "channel": kind, "jti": fields.get("j", ""),
                                                     "event": fields.get("k", ""), "code": code,
                                                     "attempts": attempts, "queued": fields.get("q", "")},
                        maxlen=DEAD_LETTERS_MAXLEN, approximate=True)
        self.delivered(name, [entry_id])

    def dead_letters(self, count: int = 200) -> list[dict]:
        """The newest dead letters, newest first."""
        return [{"id": _text(entry_id), "when": _when(_text(entry_id)),
                 **{_text(k): _text(v) for k, v in fields.items()}}
                for entry_id, fields in self.redis.xrevrange(keys.SIGNALS_DEAD_LETTERS, count=count)]

    # --- poll (RFC 8936) ------------------------------------------------------------------------------------

    def acknowledge(self, name: str, jtis: set[str], errors: dict[str, str]) -> None:
        """Delete the entries whose jti was acknowledged; dead-letter those the receiver reported an error for."""
        if not jtis and not errors:
            return
        acknowledged = []
        for entry_id, fields in self.head(name, SCAN_LIMIT):
            jti = fields.get("j")
            if jti in errors:
                self.dead_letter(name, entry_id, fields, errors[jti], 1)
            elif jti in jtis:
                acknowledged.append(entry_id)
        self.delivered(name, acknowledged)
