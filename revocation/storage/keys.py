"""Every Redis key the revocation service uses, built here and nowhere else.

Keys that must change together share a hash tag, so the same code runs on one server or a Redis Cluster:
- `{<issuer>:<bucket>}`: a status bucket with its renewal links, per-certificate histories and OCSP cache;
- `{<issuer>:s<shard>}`: one CRL shard's entries, released holds and published CRLs;
- `{h<bucket>}`: a bucket of holder records with the event-id records of those holders' events.

Certificates are grouped into buckets (small hashes that Redis stores as compact listpacks) instead of one key
each: a key costs ~60 bytes of overhead, a listpack entry a few.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from wire.status_feed import feed_key

PREFIX = "rv"
STREAM = f"{PREFIX}:events"  # the resident-register event stream
# Entries that could not be applied. Its hash tag is the stream's whole name (a key without braces hashes whole),
# so the dead-letter record and the XACK are one script on a Redis Cluster too.
DEAD_LETTERS = f"{{{STREAM}}}:refused"
CONSUMER_GROUP = "appliers"
AUDIT_STREAM = f"{PREFIX}:audit"  # append-only audit log
CRL_DIRTY = f"{PREFIX}:crl:dirty"  # set of "<issuer>:<shard>" waiting for republication
# The deployment's bucket counts (KeySpace.layout), written once by the first process to start (store.claim_layout).
LAYOUT = f"{PREFIX}:layout"
_LAYOUT = re.compile(r"status_buckets=([1-9][0-9]{0,9}) holder_buckets=([1-9][0-9]{0,9})")


@dataclass(frozen=True)
class KeySpace:
    status_buckets: int = 1 << 20
    holder_buckets: int = 1 << 20

    # --- the layout itself --------------------------------------------------------------------------------

    def layout(self) -> str:
        """The bucket counts as recorded under LAYOUT. They are fixed for a deployment's life: a key's bucket is its
        serial (or holder hash) modulo the count, so another count puts every record under another key."""
        return f"status_buckets={self.status_buckets} holder_buckets={self.holder_buckets}"

    @classmethod
    def from_layout(cls, text: str) -> KeySpace:
        """The key space `layout()` described; ValueError for any other text."""
        found = _LAYOUT.fullmatch(text)
        if not found:
            raise ValueError("not a storage layout")
        return cls(status_buckets=int(found[1]), holder_buckets=int(found[2]))

    # --- certificates -------------------------------------------------------------------------------------

    def status_tag(self, issuer: str, serial: int) -> str:
        return f"{{{issuer}:{serial % self.status_buckets}}}"

    def status(self, issuer: str, serial: int) -> str:
        return f"{PREFIX}:st:{self.status_tag(issuer, serial)}"

    def links(self, issuer: str, serial: int) -> str:
        return f"{PREFIX}:ln:{self.status_tag(issuer, serial)}"

    def history(self, issuer: str, serial: int) -> str:
        return f"{PREFIX}:hist:{self.status_tag(issuer, serial)}:{serial:X}"

    ocsp_cache_prefix = f"{PREFIX}:ocsp:"  # every OCSP cache key starts with it (held answers track the prefix)

    def ocsp_cache(self, issuer: str, serial: int) -> str:
        return f"{self.ocsp_cache_prefix}{self.status_tag(issuer, serial)}:{serial:X}"

    # --- CRL shards ---------------------------------------------------------------------------------------

    @staticmethod
    def shard_tag(issuer: str, shard: int) -> str:
        return f"{{{issuer}:s{shard}}}"

    def crl_entries(self, issuer: str, shard: int) -> str:
        """Hash: serial -> packed (reason, revocation time) for every revoked or held certificate."""
        return f"{PREFIX}:crl:rev:{self.shard_tag(issuer, shard)}"

    def crl_released(self, issuer: str, shard: int) -> str:
        """Hash: serial -> release time, for holds lifted since the last full CRL (delta removeFromCRL)."""
        return f"{PREFIX}:crl:rel:{self.shard_tag(issuer, shard)}"

    def crl_changes(self, issuer: str, shard: int) -> str:
        """Stream: one entry (field `s` = serial field) each time a serial's entry in `crl_entries` is written or
        removed, in the same MULTI as that write, so a publisher can apply only what changed since it last read."""
        return f"{PREFIX}:crl:chg:{self.shard_tag(issuer, shard)}"

    @staticmethod
    def status_feed(issuer: str, shard: int) -> str:
        """Stream: the shard's certificate status change feed that the IdP's signals worker reads (the entry format
        and cursor semantics are the contract in wire/status_feed.py); written in the same step as `crl_changes`."""
        return feed_key(issuer, shard)

    def crl_published(self, issuer: str, shard: int) -> str:
        """Hash: the shard's published full and delta CRLs, CRL number, times."""
        return f"{PREFIX}:crl:pub:{self.shard_tag(issuer, shard)}"

    # --- holders and events -------------------------------------------------------------------------------

    def holder_tag(self, holder: str) -> str:
        return f"{{h{zlib.crc32(holder.encode()) % self.holder_buckets}}}"

    def holders(self, holder: str) -> str:
        return f"{PREFIX}:hd:{self.holder_tag(holder)}"

    def event(self, holder: str, event_id: str) -> str:
        return f"{PREFIX}:ev:{self.holder_tag(holder)}:{event_id}"


def serial_field(serial: int) -> bytes:
    """A serial as a hash field: big-endian, no leading zero bytes."""
    return serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")


def serial_from_field(field: bytes) -> int:
    return int.from_bytes(field, "big")
