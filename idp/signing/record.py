"""The holder's own record of what they signed: for whom, when, each document's label and fingerprint.

Kept apart from the access record's storage on purpose (mykey/consent.py `AccessLog` is being moved to sealed
entries): one call, `note_signing`, at the moment the relying party receives the signatures, and one read,
`signed_documents`, for the account page. Entries are sealed like every other personal value at rest (a contract's
title can say a lot), bound to the account they belong to, and the list is bounded like the access record.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from idp.signing.details import fingerprint

LENGTH = 100
CONTEXT = "signing-record:"


def _key(account_id: str) -> str:
    return f"mykey:signing-record:{account_id}"


@dataclass(frozen=True)
class SigningEntry:
    client_id: str
    at: dt.datetime
    documents: tuple[tuple[str, str], ...]  # (label, fingerprint)

    def __repr__(self) -> str:
        return f"SigningEntry(client={self.client_id}, {len(self.documents)} documents)"


def note_signing(services, account_id: str, client_id: str, element: dict, at: dt.datetime, pipe=None) -> None:
    documents = [[d["label"], fingerprint(base64.b64decode(d["hash"]))] for d in element["documentDigests"]]
    sealed = services.sealer.seal({"client_id": client_id, "at": int(at.timestamp()), "documents": documents},
                                  CONTEXT + account_id)
    queue = pipe if pipe is not None else services.redis.pipeline(transaction=True)
    queue.lpush(_key(account_id), sealed)
    queue.ltrim(_key(account_id), 0, LENGTH - 1)
    if pipe is None:
        queue.execute()


def signed_documents(services, account_id: str, count: int = LENGTH) -> list[SigningEntry]:
    entries = []
    for raw in services.redis.lrange(_key(account_id), 0, count - 1):
        value = services.sealer.open(raw.decode(), CONTEXT + account_id)
        entries.append(SigningEntry(value["client_id"], dt.datetime.fromtimestamp(value["at"], dt.UTC),
                                    tuple((label, fp) for label, fp in value["documents"])))
    return entries
