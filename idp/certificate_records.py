"""What the IdP asks of the certificate status store, and nothing more: the one seam to the revocation service.

The IdP owns this interface; the revocation service does not know it exists. The one adapter that answers it from
the revocation service's status store lives in the composition root (deploy/composition.py), the only module that
imports both services. The questions, and where the IdP asks them (the first three are answered by one record,
`find`; the last by `previous`):

- is this certificate known? A login's auth certificate must have been issued (docs/design.md flow 1): the CRL
  fallback cannot say "never issued", the status store can (idp/login/bridge_api.py);
- is it good now — not revoked, not on hold, not expired? Every use of a session or a refresh token asks
  (docs/design.md flow 2, last step; idp/holder/sessions.py);
- which auth certificate is this signing certificate's twin (紐付け)? A login that reads the four basic facts
  needs both certificates from one card (docs/design.md flow 1, docs/jpki-profile.md §4);
- what did a renewal replace (新旧紐付け)? A renewed card keeps its MyKey account (mykey/directory.py, whose
  `RenewalLinks` this protocol extends).

Every answer comes from the store of record, never from a cache of OCSP responses or CRLs: a status change is seen
on the next question. A login asks on its hot path, so `find_queued` asks the same question inside the login's own
Redis pipeline (the status store shares the IdP's Redis), in one round trip with the login's other reads.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from mykey.directory import RenewalLinks


class Standing(enum.Enum):
    """A certificate's status as the issuer last stated it (RFC 6960 §2.2: good, revoked; a hold is a
    revocation with reason certificateHold, RFC 5280 §5.3.1, kept apart here because it can be released)."""

    GOOD = "good"
    REVOKED = "revoked"
    ON_HOLD = "on_hold"


@dataclass(frozen=True)
class CertificateRecord:
    """One certificate as the status store knows it."""

    standing: Standing
    not_after: dt.datetime
    auth_serial: int | None = None  # on a signing certificate: the auth certificate of the same card (紐付け)

    def good_at(self, now: dt.datetime) -> bool:
        """Good now: neither revoked nor held, and not yet expired."""
        return self.standing is Standing.GOOD and self.not_after > now


class CertificateRecords(RenewalLinks, Protocol):
    """Read-only: the IdP never changes a certificate's status."""

    def find(self, issuer: str, serial: int) -> CertificateRecord | None:
        """The certificate's record, or None for a certificate the store does not know (never issued)."""
        ...

    def find_queued(self, pipeline: redis.client.Pipeline, issuer: str, serial: int,
                    ) -> Callable[[object], CertificateRecord | None]:
        """`find`, queued as exactly one command on a pipeline of the IdP's Redis that the caller executes; the
        returned function turns that command's reply into the answer `find` would have given."""
        ...

    def previous(self, issuer: str, serial: int) -> int | None:
        """The serial of the certificate a renewal replaced with this one, if any."""
        ...

