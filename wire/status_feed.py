"""The certificate status change feed: the contract between the revocation service (writer) and the IdP (reader).

Every time a certificate's status changes — held, released, revoked — or a certificate is registered by an event
(issuance or renewal), the revocation service appends one entry to the feed of the certificate's CRL shard, in the
same Lua script (or MULTI) that writes that shard's CRL index. One stream per (issuer, shard), because a script may
only touch keys of one hash slot on a Redis Cluster: the feed key carries the shard's hash tag `{<issuer>:s<shard>}`
(revocation/storage/keys.py), so index, CRL change log and feed are written atomically together.

Entry fields (all ASCII):
- `s`: the certificate's serial, upper-case hex;
- `e`: what it is now: `good` (released, or registered by an event), `held`, `revoked`;
- `r`: with `revoked`, the RFC 5280 CRLReason code (what the CRL says anyway; the IdP never passes it on);
- `p`: with a registration that renews a certificate, the serial (hex) of the certificate it replaced.

Cursor semantics: the reader is a consumer group per feed; an entry id is the cursor, entries are delivered at
least once (a step a crash interrupted is redone on the event's redelivery and writes its entry again) and in
order per shard, so in order per certificate. The stream is capped (approximate MAXLEN, FEED_MAXLEN): a reader
that fell further behind than that loses the oldest entries — the status store stays the record of truth, and
what the reader missed is what an RP's next token refresh finds out anyway.

Certificates recorded in bulk (`StatusStore.register_many`: a migration or backfill) write no feed entry: they
are nobody's renewal and have no account yet.
"""

from __future__ import annotations

FEED_MAXLEN = 100_000  # per shard, approximate
GOOD, HELD, REVOKED = "good", "held", "revoked"
STATES = (GOOD, HELD, REVOKED)


def feed_key(issuer: str, shard: int) -> str:
    """The feed of one CRL shard; its hash tag is the shard's (revocation/storage/keys.py `shard_tag`)."""
    return f"rv:feed:{{{issuer}:s{shard}}}"


def entry(serial: int, state: str, reason: int | None = None, previous: int | None = None) -> dict[str, str]:
    """The fields of one feed entry."""
    fields = {"s": f"{serial:X}", "e": state}
    if reason is not None and state == REVOKED:
        fields["r"] = str(reason)
    if previous is not None:
        fields["p"] = f"{previous:X}"
    return fields


def encode(fields: dict[str, str]) -> str:
    """An entry as one ARGV string for a script: `k=v` pairs joined by spaces (no value holds a space)."""
    return " ".join(f"{k}={v}" for k, v in fields.items())
