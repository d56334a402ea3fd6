"""Push delivery: SETs per RFC 8935, logout tokens per Back-Channel Logout 1.0 §2.5, one receiver at a time in order.

Each outbox is pushed by one worker at a time (a lease in Redis, renewed while it works), head first: the next
token goes only once the one before it was accepted or given up, so a receiver sees its tokens in queue order and
thus in order per subject. What each answer means:
- 2xx (RFC 8935 expects 202; Back-Channel Logout 200 or 204): delivered, deleted from the outbox;
- 400 (RFC 8935 §2.3: the receiver refused this token, `err` says why; Back-Channel Logout §2.8: it could not
  process it): trying again cannot help, so the token is dead-lettered with the receiver's `err` as code
  (`rejected` when it gave none), and the next one goes;
- anything else — unreachable, a timeout, 401/403 (the receiver's authorization header may be wrong for a while),
  5xx: tried again after an exponential backoff (SIGNALS_PUSH_BACKOFF_SECONDS doubling up to
  SIGNALS_PUSH_BACKOFF_MAX_SECONDS), and dead-lettered (`gave_up`) after SIGNALS_PUSH_MAX_ATTEMPTS tries. With
  the defaults a token is tried for about an hour, so a receiver down for an hour gets everything when it returns.
The head's tries are kept in Redis next to the outbox, so a restarted worker goes on from the same count.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from urllib.parse import urlencode

import redis

from idp import keys
from idp.signals.config import SignalsConfig
from idp.signals.outbox import Outboxes
from idp.signals.streams import PUSH, StreamStore
from wire.fetch import Fetcher, FetchFailed, FetchPolicy

log = logging.getLogger(__name__)

LEASE_MS = 15_000
WAIT_MS = 500  # how long an idle pusher blocks for a new token before it looks at its lease again
MAX_ERR = 64  # characters of a receiver's `err` code kept
BATCH = 100  # tokens read and pushed per round
BATCH_S = 2.0  # a round pushes no longer than this (well within the lease)

# Take the lease if free, or extend it if ours. KEYS: lease. ARGV: owner, ttl ms.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Give the lease up if still ours (a worker stopping: its successor must not wait out LEASE_MS). KEYS: lease.
# ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Pusher:
    """Pushes one outbox (`ssf:<client_id>` or `bcl:<client_id>`) until `stop` is set."""

    def __init__(self, name: str, client: redis.Redis, outboxes: Outboxes, streams: StreamStore, clients,
                 config: SignalsConfig, fetcher: Fetcher, owner: str, stop: threading.Event):
        self.name, self.kind, self.client_id = name, *name.split(":", 1)
        self.redis = client
        self.outboxes = outboxes
        self.streams = streams
        self.clients = clients
        self.config = config
        self.fetcher = fetcher
        self.owner = owner
        self.stop = stop
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.step()
            except redis.RedisError:
                log.warning("signals push round failed on Redis; retrying", extra={"code": "redis_unavailable"})
                self.stop.wait(1.0)
            except Exception as exc:  # a defect must not stop this receiver's deliveries for good
                log.warning("signals push round failed (%s); retrying", exc.__class__.__name__,
                            extra={"code": "push_round_failed", "client_id": self.client_id})
                self.stop.wait(1.0)
        try:  # stopping (SIGTERM, Ctrl-C): hand the outbox over at once; a killed worker's lease just expires
            self._release(keys=[keys.outbox_lease(self.name)], args=[self.owner])
        except redis.RedisError:
            pass

    def step(self) -> None:
        """One bounded round: pushes, in order, what waits (up to BATCH tokens or BATCH_S seconds), or one wait of
        at most WAIT_MS. The lease and the stream are looked at once per round, the pushed tokens deleted with one
        command: a worker killed mid-round pushes them again on restart (at least once, same jti)."""
        if not self._lease(keys=[keys.outbox_lease(self.name)], args=[self.owner, LEASE_MS]):
            self.stop.wait(WAIT_MS / 1000)
            return
        target = self.target()
        if target is None:  # a paused stream holds its tokens; a stream turned to poll is read by its receiver
            self.stop.wait(WAIT_MS / 1000)
            return
        head = self.outboxes.head(self.name, BATCH)
        if not head:
            self.outboxes.wait(self.name, "0-0", WAIT_MS)
            return
        state = self.outboxes.state(self.name)
        attempts = int(state.get("attempts", 0)) if state.get("entry") == head[0][0] else 0
        wait = float(state.get("next_at", 0)) - time.time() if attempts else 0
        if wait > 0:
            self.stop.wait(min(wait, WAIT_MS / 1000))
            return
        delivered: list[str] = []
        failed = None
        ends = time.monotonic() + BATCH_S
        for entry_id, fields in head:
            outcome = self.push(target, fields["t"])
            if outcome is not None:
                failed = (entry_id, fields, outcome)
                break
            delivered.append(entry_id)
            attempts = 0
            if time.monotonic() >= ends or self.stop.is_set():
                break
        self.outboxes.delivered(self.name, delivered)
        if failed is not None:
            self.failed(*failed, attempts)

    def failed(self, entry_id: str, fields: dict, outcome: str, attempts: int) -> None:
        """The head entry was not accepted: dead-letter it, or note the try and when to try again."""
        if outcome.startswith("refused:"):
            code = outcome.split(":", 1)[1]
            log.warning("signals token refused by its receiver; dead-lettered",
                        extra={"code": code, "client_id": self.client_id})
            self.outboxes.dead_letter(self.name, entry_id, fields, code, attempts + 1)
        elif attempts + 1 >= self.config.push_max_attempts:
            log.warning("signals token undeliverable; dead-lettered",
                        extra={"code": "gave_up", "client_id": self.client_id})
            self.outboxes.dead_letter(self.name, entry_id, fields, "gave_up", attempts + 1)
        else:
            delay = min(self.config.push_backoff_max, self.config.push_backoff_first * 2 ** attempts)
            self.outboxes.failed(self.name, entry_id, attempts + 1, time.time() + delay, outcome)

    def target(self) -> tuple[str, str | None] | None:
        """(URL, Authorization header) to push to now, or None to hold."""
        if self.kind == "ssf":
            stream = self.streams.get(self.client_id)
            if stream is None or stream.method != PUSH or stream.status != "enabled":
                return None
            return stream.endpoint_url, stream.authorization_header
        client = self.clients.get(self.client_id)
        return (client.backchannel_logout_uri, None) if client and client.backchannel_logout_uri else None

    def push(self, target: tuple[str, str | None], token: str) -> str | None:
        """None when accepted; `refused:<err>` when the receiver refused this token; else a retryable code."""
        url, authorization = target
        try:
            if self.kind == "ssf":
                self.fetcher.fetch(url, body=token.encode(), content_type="application/secevent+jwt",
                                   accept="application/json", authorization=authorization)
            else:
                self.fetcher.fetch(url, body=urlencode({"logout_token": token}).encode(),
                                   content_type="application/x-www-form-urlencoded")
            return None
        except FetchFailed as failed:
            answer = failed.answer
            if answer is not None and answer.status == 400:
                return f"refused:{_err(answer.body)}"
            return f"http_{answer.status}" if answer is not None else failed.reason


def _err(body: bytes) -> str:
    """The `err` of an RFC 8935 §2.3 error body, bounded and reduced to a code's characters; `rejected` else."""
    try:
        err = json.loads(body).get("err")
    except (ValueError, AttributeError):
        err = None
    if not isinstance(err, str) or not err:
        return "rejected"
    return "".join(c for c in err[:MAX_ERR] if c.isalnum() or c in "_-") or "rejected"


def push_fetcher(config: SignalsConfig, development: bool, ca_file: str | None) -> Fetcher:
    """The one HTTP client of the pushes: https (plain http to loopback in development), bounded, no redirect."""
    return Fetcher(FetchPolicy(timeout=config.push_timeout, max_bytes=16 * 1024, schemes=frozenset({"https"}),
                               loopback_http=development, ca_file=ca_file))


def owner_name() -> str:
    return f"signals-{uuid.uuid4().hex[:12]}"
