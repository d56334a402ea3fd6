"""The holder's access record — which relying party received what, and when — sealed so that only their card opens it.

Why: a platform that keeps "who logged in where, and when" in readable form lets whoever reads its database (an
operator, a backup, an intruder) trace a person's movements. The holder must see every release of their identity
(like Mynaportal's access record), but nobody else needs to, so the entries are encrypted at write time to a key the
platform does not hold at rest.

The key: when the holder opens their record, the card's user-authentication key signs a fixed message naming this
platform (jpki.signature.history_message). RSASSA-PKCS1-v1_5 is deterministic, so the same card always gives the
same signature; HKDF-SHA256 of it is an X25519 private key (`holder_key`) that only that card can make again. The
platform keeps the matching public key and seals each entry to it with HPKE (RFC 9180, base mode:
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM — `cryptography`'s implementation, nothing hand-made). The
HPKE `info` names the Redis list the entry belongs to (and so the account), so an entry moved to another holder's
list or from the consents to the releases does not open. Every plaintext is padded to a multiple of
`PAD_TO` octets, so the length of a ciphertext does not tell one relying party's id from another's.

What is kept, per account (all under the account's hash tag, mykey/keys.py):
- `record_key`: the public key and a keyed hash of the certificate whose card made it;
- `record`: sealed releases (and notes about the record itself), newest first, at most `RECORD_LENGTH`, the list
  expiring `RECORD_RETENTION` after its last write (rounded up to a month's end, so that the TTL does not date a
  login: mykey/retention.py), and entries older than that dropped whenever the holder opens it;
- a release that handed document signatures to the relying party (idp/signing) also holds what was signed: each
  document's label and fingerprint, never the digest itself. What a person signed, for whom and when, is as
  revealing as where they logged in, so it lives in the same entry, under the same key and retention, and is
  padded like the rest (a long batch of labels takes more `PAD_TO` blocks, which says only that it was long);
- `record_consents`: sealed notes of the consents given (relying party, scopes, time), at most `CONSENT_NOTES`;
- `record_pending`: entries written while there is no key for the certificate in use — before the holder first
  opened the record, or after a renewal until they open it with the new card. These are sealed with a platform key
  (AES-GCM) instead, because nothing else exists to seal them to; the list expires `PENDING_RETENTION` after its
  first entry, rounded up to a UTC midnight (EXPIREAT NX), and opening the record moves them under the holder's
  key and deletes them.

Renewal: a renewed certificate has a new key pair on the card and the old private key is gone, so entries sealed to
the old public key can never be opened again; no re-wrapping is possible because the platform never sees the old
card's signature after the renewal. The first time the holder opens the record with the renewed card (`open`), the
old entries are counted and deleted, and a sealed note under the new key says how many there were and when the
certificate was renewed, which the account page shows. Entries written between the renewal and that moment are in
`record_pending` (the writer sees the certificate in use is not the key's) and are not lost.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from mykey import keys, retention
from mykey.consent import names
from mykey.keys import as_text
from wire.errors import FixedCodeError

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
RECORD_LENGTH = 1000  # releases kept per account, newest first
RECORD_RETENTION = dt.timedelta(days=400)
CONSENT_NOTES = 256  # consent notes kept per account (a note per grant; the live consent is mykey/consent.py's)
PENDING_RETENTION = dt.timedelta(days=30)
PENDING_LENGTH = 200
PAD_TO = 256
_KEY_INFO = b"mykey access record: X25519 key from the card's signature, v1"
_INFO = b"mykey access record entry v1\x00"


def holder_key(signature: bytes) -> X25519PrivateKey:
    """The holder's record key, from the card's signature over the history message. Deterministic; kept by nobody."""
    if not isinstance(signature, bytes) or len(signature) < 128:
        raise ValueError("The access record's key is made from a card signature.")
    return X25519PrivateKey.from_private_bytes(
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(signature))


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


class RecordError(FixedCodeError):
    code = "record_error"


class RecordKeyMismatch(RecordError):
    """The card's key is not the one the record was sealed to, for the same certificate: nothing is changed."""

    code = "record_key_mismatch"


@dataclass(frozen=True)
class Release:
    client_id: str
    claims: tuple[str, ...]
    at: dt.datetime
    token_type: str | None = None  # "card" or "smartphone"
    documents: tuple[tuple[str, str], ...] = ()  # (label, fingerprint) of each document signed for this release


@dataclass(frozen=True)
class ConsentNote:
    client_id: str
    scopes: tuple[str, ...]
    at: dt.datetime


@dataclass(frozen=True)
class RenewalNote:
    """Entries sealed to the key of a certificate since renewed: `lost` of them could not be opened and were
    deleted when the holder first opened the record with the renewed card."""

    lost: int
    renewed_on: dt.date
    at: dt.datetime


@dataclass(frozen=True)
class OpenedRecord:
    releases: list[Release]
    consents: list[ConsentNote]  # the newest note per relying party, newest first
    renewals: list[RenewalNote]


@dataclass(frozen=True)
class RecordCounts:
    sealed: int  # entries under the holder's key (releases and notes)
    pending: int  # entries waiting for the holder to open the record with their current card
    has_key: bool


MAX_DOCUMENTS = 10  # as a signing request allows (idp/signing/details.py)
MAX_LABEL = 100


def _documents(documents: Iterable[tuple[str, str]]) -> list[list[str]]:
    """(label, fingerprint) pairs as stored, or ValueError: text only, bounded like the signing request's."""
    checked = [[label, fingerprint] for label, fingerprint in documents]
    if len(checked) > MAX_DOCUMENTS or not all(
            isinstance(text, str) and 0 < len(text) <= MAX_LABEL for pair in checked for text in pair):
        raise ValueError("Signed documents are recorded by label and fingerprint, at most ten.")
    return checked


def _moment(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


def _pad(entry: dict) -> bytes:
    raw = json.dumps(entry, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % PAD_TO)  # JSON ignores trailing white space


# One entry, written where it can be opened: under the holder's key if that key is still the one it was sealed to
# (and belongs to the certificate of the login), else in the pending list. One account's keys: one slot.
# KEYS: record key, target list, pending list.  ARGV: public key the entry was sealed to ('' = none), certificate,
# sealed entry, pending entry, target length, target expiry, pending length, pending expiry (epoch seconds).
_PUSH = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'pub') == ARGV[1] and redis.call('HGET', KEYS[1], 'cert') == ARGV[2]
then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
  redis.call('EXPIREAT', KEYS[2], ARGV[6])
  return 1
end
redis.call('LPUSH', KEYS[3], ARGV[4])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[7]) - 1)
redis.call('EXPIREAT', KEYS[3], ARGV[8], 'NX')
return 0
"""


class AccessRecord:
    def __init__(self, client: redis.Redis, pending_key: bytes, counted: Callable[[str], None] | None = None):
        """`counted(sealed_to)` is told of each entry written, "holder" or "pending": counts only, for operators."""
        self.redis = client
        self._pending = AESGCM(pending_key)
        self._counted = counted or (lambda _sealed_to: None)
        self._push = client.register_script(_PUSH)

    # --- writing --------------------------------------------------------------------------------------------

    def record(self, account_id: str, certificate: str, client_id: str, claims: Iterable[str], at: dt.datetime,
               token_type: str | None = None, documents: Iterable[tuple[str, str]] = (),
               pipe: redis.client.Pipeline | None = None) -> None:
        """Note that `client_id` received these claims (names only) at `at`, after a login with `certificate` (its
        keyed hash) from `token_type`, and the signatures of `documents` ((label, fingerprint) pairs) if any.
        Sealed to the holder's key when it belongs to that certificate, else pending. Given a `pipe`, the writes
        are queued on it for its caller to execute (the key is read before)."""
        entry = {"k": "release", "client_id": names([client_id])[0], "claims": names(claims),
                 "at": int(at.timestamp())}
        if token_type is not None:
            entry["token_type"] = names([token_type])[0]
        signed = _documents(documents)
        if signed:
            entry["documents"] = signed
        self._write(account_id, certificate, keys.record(account_id), entry, RECORD_LENGTH, pipe)

    def note_consent(self, account_id: str, certificate: str, client_id: str, scopes: Iterable[str],
                     at: dt.datetime) -> None:
        """Keep, for the holder's eyes only, that they agreed at `at` that `client_id` receives `scopes`."""
        entry = {"k": "consent", "client_id": names([client_id])[0], "scopes": names(scopes),
                 "at": int(at.timestamp())}
        self._write(account_id, certificate, keys.record_consents(account_id), entry, CONSENT_NOTES, None)

    def _write(self, account_id: str, certificate: str, target: str, entry: dict, length: int,
               pipe: redis.client.Pipeline | None) -> None:
        """Seal to the holder's key when it is the key of `certificate`, else keep pending — decided again inside
        Redis (`_PUSH`), so that an entry sealed to a key the holder has meanwhile replaced (a renewal opened at the
        same moment) lands in the pending list and is re-sealed, never in a list where it could not be opened."""
        at = dt.datetime.fromtimestamp(entry["at"], dt.UTC)
        public, sealed_for = self.redis.hmget(keys.record_key(account_id), "pub", "cert")
        sealed_to = "holder" if public and as_text(sealed_for) == certificate else "pending"
        sealed = self._seal(public, target, entry) if sealed_to == "holder" else b""
        self._push(keys=[keys.record_key(account_id), target, keys.record_pending(account_id)],
                   args=[public or b"", certificate, sealed, self._seal_pending(account_id, {**entry, "list": target}),
                         length, retention.by_month(at, RECORD_RETENTION), PENDING_LENGTH,
                         retention.by_day(at, PENDING_RETENTION)],
                   client=pipe if pipe is not None else self.redis)
        self._counted(sealed_to)

    @staticmethod
    def _seal(public: bytes, target: str, entry: dict) -> bytes:
        return SUITE.encrypt(_pad(entry), X25519PublicKey.from_public_bytes(public), info=_INFO + target.encode())

    def _seal_pending(self, account_id: str, entry: dict) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._pending.encrypt(nonce, _pad(entry), keys.record_pending(account_id).encode())

    def _open_pending(self, account_id: str, blob: bytes) -> dict | None:
        try:
            return json.loads(self._pending.decrypt(blob[:12], blob[12:], keys.record_pending(account_id).encode()))
        except (InvalidTag, ValueError):
            return None

    # --- what the account page shows without the card --------------------------------------------------------

    def counts(self, account_id: str) -> RecordCounts:
        with self.redis.pipeline(transaction=False) as pipe:  # one slot, reads only
            pipe.llen(keys.record(account_id))
            pipe.llen(keys.record_consents(account_id))
            pipe.llen(keys.record_pending(account_id))
            pipe.exists(keys.record_key(account_id))
            releases, consents, pending, has_key = pipe.execute()
        return RecordCounts(sealed=releases + consents, pending=pending, has_key=bool(has_key))

    # --- opening, with the key made from the card's signature -------------------------------------------------

    def open(self, account_id: str, private_key: X25519PrivateKey, certificate: str, renewed_on: dt.date,
             now: dt.datetime) -> OpenedRecord:
        """Everything the holder's record holds, opened with `private_key` (from the card of `certificate`).

        The first time, the key is set up; after a renewal (another certificate's key), the entries sealed to the
        old key are counted, deleted and replaced by a note saying so (`renewed_on`: the new certificate's start).
        Either way the pending entries are moved under the key. Done in one transaction that is retried if a
        login writes meanwhile, so no entry is lost between reading and deleting."""
        public = public_bytes(private_key)
        record_key, pending = keys.record_key(account_id), keys.record_pending(account_id)
        lists = (keys.record(account_id), keys.record_consents(account_id))

        def settle(pipe: redis.client.Pipeline) -> None:
            stored, sealed_for = pipe.hmget(record_key, "pub", "cert")
            waiting = pipe.lrange(pending, 0, -1)
            lost = 0
            if stored and as_text(sealed_for) == certificate and stored != public:
                raise RecordKeyMismatch("The card's key does not open this access record.")
            renewed = bool(stored) and as_text(sealed_for) != certificate
            if renewed:
                lost = sum(pipe.llen(name) for name in lists)
            pipe.multi()
            if renewed:
                pipe.delete(*lists)
            if renewed or not stored:
                pipe.hset(record_key, mapping={"pub": public, "cert": certificate})
            for blob in reversed(waiting):  # oldest first, so the newest ends on top
                entry = self._open_pending(account_id, blob)
                if entry is None:
                    continue
                target = entry.pop("list")
                if target in lists:
                    pipe.lpush(target, self._seal(public, target, entry))
            if renewed:
                note = {"k": "renewal", "lost": lost, "renewed_on": renewed_on.isoformat(), "at": int(now.timestamp())}
                pipe.lpush(lists[0], self._seal(public, lists[0], note))
            pipe.delete(pending)
            pipe.ltrim(lists[0], 0, RECORD_LENGTH - 1)
            pipe.ltrim(lists[1], 0, CONSENT_NOTES - 1)
            for name in lists:
                pipe.expireat(name, retention.by_month(now, RECORD_RETENTION))

        self.redis.transaction(settle, record_key, pending, *lists)
        return self._read(account_id, private_key, now)

    def _read(self, account_id: str, private_key: X25519PrivateKey, now: dt.datetime) -> OpenedRecord:
        releases: list[Release] = []
        renewals: list[RenewalNote] = []
        oldest = int((now - RECORD_RETENTION).timestamp())
        name = keys.record(account_id)
        for index, entry in self._entries(name, private_key):
            if entry["at"] < oldest:  # newest first: everything from here on is past its retention
                if index:
                    self.redis.ltrim(name, 0, index - 1)
                else:
                    self.redis.delete(name)
                break
            if entry["k"] == "renewal":
                renewals.append(RenewalNote(entry["lost"], dt.date.fromisoformat(entry["renewed_on"]),
                                            _moment(entry["at"])))
            elif entry["k"] == "release":
                releases.append(Release(entry["client_id"], tuple(entry["claims"]), _moment(entry["at"]),
                                        entry.get("token_type"),
                                        tuple((label, fp) for label, fp in entry.get("documents", ()))))
        newest: dict[str, ConsentNote] = {}
        for _index, entry in self._entries(keys.record_consents(account_id), private_key):
            if entry["k"] == "consent" and entry["client_id"] not in newest:
                newest[entry["client_id"]] = ConsentNote(entry["client_id"], tuple(entry["scopes"]),
                                                         _moment(entry["at"]))
        return OpenedRecord(releases, list(newest.values()), renewals)

    def _entries(self, name: str, private_key: X25519PrivateKey) -> Iterable[tuple[int, dict]]:
        """(position in the list, entry) of the entries that open with this key, newest first; one that does not is
        skipped, never shown."""
        info = _INFO + name.encode()
        for index, blob in enumerate(self.redis.lrange(name, 0, -1)):
            try:
                yield index, json.loads(SUITE.decrypt(blob, private_key, info=info))
            except (InvalidTag, ValueError):
                continue


def purge_plain_records(client: redis.Redis, batch: int = 500) -> int:
    """Delete the per-account consents and access logs kept in clear before the record was sealed (mykey/keys.py,
    PLAIN_RECORD_PATTERNS): whoever read them could trace a holder. Their consents are not carried over (the relying
    party asks again) and their releases cannot be sealed to keys that do not exist yet. Returns the keys deleted."""
    deleted = 0
    for pattern in keys.PLAIN_RECORD_PATTERNS:
        found: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            found.append(key)
            if len(found) >= batch:
                deleted += sum(client.delete(name) for name in found)  # one key at a time: any slot
                found = []
        deleted += sum(client.delete(name) for name in found)
    return deleted


def encode_key(private_key: X25519PrivateKey) -> str:
    """The private key's raw octets, base64url: only to hand it, sealed, from the bridge's answer to the page view."""
    raw = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.urlsafe_b64encode(raw).decode()


def decode_key(encoded: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(encoded))
