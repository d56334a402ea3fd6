"""The OCSP responder (RFC 6960, RFC 5019 profile as updated by RFC 9919): answers from the store; no policy here.

The status store is the truth; a signed response is only a cache of it. Per request:

- The request is parsed by pyca/cryptography (a valid nonce-less one is remembered by its bytes, MAX_PARSED). It
  must carry exactly one CertID (RFC 5019 §2.1.1); cryptography refuses more than one, and so do we, with
  `malformedRequest` — answering only the first would let a client believe it had been told about the others.
- The CertID's issuerNameHash / issuerKeyHash (SHA-1, or SHA-256 since RFC 9919) must match one of our issuer
  CAs, else `unauthorized` (RFC 6960 §2.3: we are not authoritative for that issuer).
- good / revoked (time and reason) / on hold = revoked with reason certificateHold (RFC 6960 §2.2).
- A serial the store has never seen is answered "revoked" with the extended-revoke response extension,
  revocationTime 1970-01-01 and reason certificateHold (RFC 6960 §2.2, §4.4.8): every certificate is registered
  by an issuance event, so the store is authoritative, and a never-issued serial must never look "good". That
  answer is short-lived (UNISSUED_VALIDITY) and never cached in Redis: the issuance event may simply not have
  arrived yet, and caching answers for arbitrary serials would let anyone fill Redis.
- Every answer for an issued serial starts from the pre-signed response for its CertID form, cached in Redis
  next to the status record (`KeySpace.ocsp_cache`, same hash slot): a hash holding, per CertID hash algorithm
  (a response's CertID must use the request's), the DER and its times and status, so that a hit is served without
  parsing the DER. The store's compare-and-set deletes that key on every status change; a miss signs lazily, and
  only the form asked for (`on_status_change`, an applier listener, may still sign both forms at once). The cache
  is written only if the status record is still the one that was signed (a Lua compare-and-set), so a slow request
  racing a revocation can never put back a response for an older status. A request not held in process reads its
  form, or else the status record, in one round trip (a Lua script), so a miss costs two. The key expires a while
  before nextUpdate (no later than its earliest form should), so no periodic refresh job is needed: the first
  request after expiry re-signs. Each process also holds what it read from that cache (revocation/ocsp/held.py), dropped
  the moment Redis announces a change to the entry, so a repeated request costs no round trip; not with a Redis
  Cluster.
- Without a nonce that pre-signed response is the answer, byte for byte.
- With a nonce (RFC 9654, which obsoletes RFC 8954 and allows 1..128 octets; 0 or over 128 → `malformedRequest`)
  the pre-signed response is re-signed for the request: dated now, the nonce echoed, everything else as it was
  (revocation/ocsp/der.py) — one signature, no status read, no response builder, and as coherent as the
  nonce-less answer. Live signing (this, and the never-issued answer) is capped per process
  (`ocsp_nonce_concurrency` signatures at once); past the cap, after a short wait, the answer is `tryLater`.

Responses are signed by the issuer's delegated responder (RFC 6960 §4.2.2.2), which is included in the response
and named by key hash (RFC 5019 §2.2.3). Nothing here logs serials, nonces or request bytes.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponseStatus
from redis.cluster import RedisCluster
from werkzeug.http import http_date

from jpki.issuer import Issuer
from revocation.config import RevocationConfig
from revocation.ocsp.der import NonceTemplate
from revocation.ocsp.held import HeldResponses
from revocation.storage.keys import serial_field
from revocation.storage.store import CertificateStatus, StatusRecord, StatusStore

log = logging.getLogger(__name__)

# RFC 6960 §4.4.8 id-pkix-ocsp-extended-revoke; its value SHALL be NULL (DER 05 00), never critical.
EXTENDED_REVOKE = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.9"), b"\x05\x00")
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_NONCE_BYTES = 128  # RFC 9654 §2.1
NONCE_WAIT_SECONDS = 0.1  # how long a live signature waits for a free slot before `tryLater`
UNISSUED_VALIDITY = dt.timedelta(minutes=5)
MAX_PARSED = 20_000  # nonce-less requests remembered parsed, per process (about 0.3 kB each)
CERT_ID_HASHES: dict[str, hashes.HashAlgorithm] = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}  # noqa: S303


def _about(form: str) -> str:
    """The cache field next to a form's response: "<thisUpdate>:<nextUpdate>:<status label>" (epoch seconds)."""
    return f"about:{form}"


# One round trip for what a request not held in process needs: the cached form and its description, or, when
# they are missing, the status record to sign from (a miss then costs two round trips: this, and the write below).
# KEYS: OCSP cache, status bucket.  ARGV: form, its description field, record field.
_CACHED_OR_RECORD = """
local cached = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2])
if cached[1] and cached[2] then return cached end
return {false, false, redis.call('HGET', KEYS[2], ARGV[3])}
"""

# Store pre-signed responses only if the status record is still the one they were signed for. Every form already
# in the entry was stored under that same check, and a status change deletes the entry, so forms are added next to
# each other; the entry lives no longer than its earliest form should (PEXPIRE … LT, Redis 7.0).
# KEYS: status bucket, OCSP cache.  ARGV: record field, packed record, ttl (ms), then field / value pairs.
_CACHE_IF_CURRENT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[3], 'LT')
return 1
"""


@dataclass(frozen=True)
class OcspAnswer:
    """A DER OCSPResponse and what HTTP needs to say about caching it (RFC 5019 §6.2)."""

    der: bytes
    status: OCSPResponseStatus
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    cacheable: bool = False  # the same bytes answer every client (no nonce): shared caches may keep them
    certificate_status: str | None = None  # good / revoked / on_hold / not_issued, for metrics

    @functools.cached_property
    def http_validators(self) -> tuple[str, str, str]:
        """Last-Modified, Expires and ETag of a cacheable answer (RFC 5019 §6.2): fixed for its bytes, so worked
        out once per answer object — a held answer is the same object for every request that it answers."""
        etag = '"' + hashlib.sha1(self.der, usedforsecurity=False).hexdigest() + '"'
        return http_date(self.this_update), http_date(self.next_update), etag

    @functools.cached_property
    def nonce_template(self) -> NonceTemplate:
        """This successful answer taken apart once for re-signing with a nonce (revocation/ocsp/der.py)."""
        return NonceTemplate.from_response(self.der)

    @classmethod
    def refusal(cls, status: OCSPResponseStatus) -> OcspAnswer:
        """An unsigned error response (RFC 6960 §4.2.1: only a status, no responseBytes)."""
        return cls(_unsuccessful(status), status)


def _unsuccessful(status: OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


class _Refused(Exception):
    def __init__(self, status: OCSPResponseStatus):
        super().__init__(status.name)
        self.status = status


@dataclass(frozen=True)
class _Query:
    issuer: str  # slug
    serial: int
    algorithm: str  # "sha1" | "sha256"
    nonce: bytes | None


def _public_key_bits(certificate: x509.Certificate) -> bytes:
    """The value of the certificate's subjectPublicKey BIT STRING, which issuerKeyHash covers (RFC 6960 §4.1.1)."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    raise ValueError("issuer key type not supported for OCSP CertIDs")


def _signer(key) -> Callable[[bytes], bytes]:
    """Signs bytes as `_sign` has cryptography sign a response: the responder's key, SHA-256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError("responder key type not supported")


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


class OcspResponder:
    def __init__(self, store: StatusStore, issuers: dict[str, Issuer], config: RevocationConfig):
        self.store = store
        self.issuers = issuers
        self.validity = config.ocsp_validity
        # Cache entries expire a quarter of the validity before nextUpdate, so a served response always has
        # time left for the client's own caching.
        self.cache_margin = config.ocsp_validity / 4
        self.live_signing = threading.BoundedSemaphore(config.ocsp_nonce_concurrency)
        self._cache_if_current = store.redis.register_script(_CACHE_IF_CURRENT)
        self._cached_or_record = store.redis.register_script(_CACHED_OR_RECORD)
        self._signers = {slug: _signer(issuer.responder_key) for slug, issuer in issuers.items()}
        self._parsed: dict[bytes, _Query] = {}  # nonce-less request bytes → what they ask (see _parse)
        self.held: HeldResponses[OcspAnswer] | None = (
            None if isinstance(store.redis, RedisCluster) else HeldResponses(store.redis, store.keys.ocsp_cache_prefix))
        # (algorithm, issuerNameHash, issuerKeyHash) → issuer slug, and back; computed once.
        self._issuer_by_id: dict[tuple[str, bytes, bytes], str] = {}
        self._id_of: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        for slug, issuer in issuers.items():
            name_der = issuer.certificate.subject.public_bytes()
            key_bits = _public_key_bits(issuer.certificate)
            for name, algorithm in CERT_ID_HASHES.items():
                hashes_ = (_digest(algorithm, name_der), _digest(algorithm, key_bits))
                self._issuer_by_id[(name, *hashes_)] = slug
                self._id_of[(slug, name)] = hashes_

    # --- answering ----------------------------------------------------------------------------------------

    def respond(self, request_der: bytes) -> OcspAnswer:
        try:
            query = self._parse(request_der)
            presigned = self._presigned(query)
            if presigned is None:  # a serial we never issued: signed for this request, nonce or not
                return self._live(query, None)
            if query.nonce is None:
                return presigned
            return self._with_nonce(query, presigned)
        except _Refused as refused:
            return OcspAnswer.refusal(refused.status)
        except redis.RedisError as exc:
            log.warning("OCSP: status store unavailable (%s)", type(exc).__name__)
            return OcspAnswer.refusal(OCSPResponseStatus.TRY_LATER)
        except Exception as exc:
            # RFC 6960 §2.3 internalError. Only the exception's type is logged: its text could hold request data.
            log.error("OCSP: internal error (%s)", type(exc).__name__)
            return OcspAnswer.refusal(OCSPResponseStatus.INTERNAL_ERROR)

    def on_status_change(self, issuer: str, serial: int, record: StatusRecord) -> None:
        """Applier listener: re-sign the cached response as soon as a status changes."""
        try:
            self._fill_cache(issuer, serial, record, self._now())
        except Exception as exc:
            # Never fail the event for this: the store already dropped the stale response, a request re-signs.
            log.warning("OCSP: could not re-sign after a status change (%s, %s)", issuer, type(exc).__name__)

    def _parse(self, request_der: bytes) -> _Query:
        """The request's CertID and nonce, checked. A valid nonce-less request is remembered by its bytes (at most
        MAX_PARSED): the same bytes always parse the same, and clients repeat them until nextUpdate."""
        query = self._parsed.get(request_der)
        if query is not None:
            return query
        query = self._parse_new(request_der)
        if query.nonce is None:
            if len(self._parsed) >= MAX_PARSED:
                self._parsed.clear()  # bounded; cheaper than ordering, and refilled by the next requests
            self._parsed[request_der] = query
        return query

    def _parse_new(self, request_der: bytes) -> _Query:
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            extensions = request.extensions
        except (ValueError, NotImplementedError) as exc:  # NotImplementedError: more than one CertID
            raise _Refused(OCSPResponseStatus.MALFORMED_REQUEST) from exc
        try:
            algorithm = request.hash_algorithm.name
        except UnsupportedAlgorithm as exc:
            raise _Refused(OCSPResponseStatus.UNAUTHORIZED) from exc
        slug = self._issuer_by_id.get((algorithm, request.issuer_name_hash, request.issuer_key_hash))
        if slug is None:
            raise _Refused(OCSPResponseStatus.UNAUTHORIZED)
        nonce = None
        try:
            nonce = extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            pass
        if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_BYTES:
            raise _Refused(OCSPResponseStatus.MALFORMED_REQUEST)
        serial = request.serial_number
        if not 0 < serial < 1 << 159:  # no certificate has it: positive, at most 20 octets (RFC 5280 §4.1.2.2)
            raise _Refused(OCSPResponseStatus.MALFORMED_REQUEST)
        return _Query(slug, serial, algorithm, nonce)

    def _live(self, query: _Query, record: StatusRecord | None) -> OcspAnswer:
        """Sign now, for this request only (with its nonce, if any): a serial we never issued."""
        if not self.live_signing.acquire(timeout=NONCE_WAIT_SECONDS):
            raise _Refused(OCSPResponseStatus.TRY_LATER)
        try:
            return self._sign(query.issuer, query.serial, query.algorithm, record, self._now(), query.nonce)
        finally:
            self.live_signing.release()

    def _with_nonce(self, query: _Query, presigned: OcspAnswer) -> OcspAnswer:
        """The pre-signed answer re-signed for this request: dated now, the nonce echoed (revocation/ocsp/der.py)."""
        if not self.live_signing.acquire(timeout=NONCE_WAIT_SECONDS):
            raise _Refused(OCSPResponseStatus.TRY_LATER)
        try:
            der = presigned.nonce_template.sign(query.nonce, self._now(), self._signers[query.issuer])
        finally:
            self.live_signing.release()
        return OcspAnswer(der, OCSPResponseStatus.SUCCESSFUL, presigned.this_update, presigned.next_update,
                          cacheable=False, certificate_status=presigned.certificate_status)

    def _presigned(self, query: _Query) -> OcspAnswer | None:
        """The pre-signed answer in the request's CertID form: held in process, else from Redis, else signed now
        and cached (that form only). None for a serial the store has never seen."""
        key = self.store.keys.ocsp_cache(query.issuer, query.serial)
        held, ticket = self.held.lookup(key, query.algorithm) if self.held is not None else (None, None)
        if held is not None:
            return held
        keys = self.store.keys
        reply = self._cached_or_record(keys=[key, keys.status(query.issuer, query.serial)],
                                       args=[query.algorithm, _about(query.algorithm), serial_field(query.serial)])
        der, about, raw = (*reply, None)[:3]  # [form, description] or [nil, nil, record or nil]
        if der is not None and about is not None:  # an entry from before descriptions were kept is re-signed
            answer = _from_cache(der, about)
            if self.held is not None:  # no longer than the Redis entry lives
                self.held.keep(key, query.algorithm, answer, (answer.next_update - self.cache_margin).timestamp(),
                               ticket)
            return answer
        if not raw:
            return None
        record = StatusRecord.unpack(raw)
        # A miss signs only the form asked for: a status change deletes the entry, and most clients ask in one form.
        return self._fill_cache(query.issuer, query.serial, record, self._now(), (query.algorithm,))[query.algorithm]

    def _fill_cache(self, issuer: str, serial: int, record: StatusRecord, now: dt.datetime,
                    forms: tuple[str, ...] = tuple(CERT_ID_HASHES)) -> dict[str, OcspAnswer]:
        """Sign the response in the given CertID forms and cache them while `record` is still the current status."""
        answers = {name: self._sign(issuer, serial, name, record, now, None) for name in forms}
        ttl = next(iter(answers.values())).next_update - self.cache_margin - now
        if ttl > dt.timedelta(seconds=1):
            pairs = [item for name, answer in answers.items() for item in (name, answer.der, _about(name),
                                                                           _describe(answer))]
            keys = self.store.keys
            self._cache_if_current(keys=[keys.status(issuer, serial), keys.ocsp_cache(issuer, serial)],
                                   args=[serial_field(serial), record.pack(), int(ttl.total_seconds() * 1000),
                                         *pairs])
        return answers

    # --- signing ------------------------------------------------------------------------------------------

    def _sign(self, issuer_slug: str, serial: int, algorithm: str, record: StatusRecord | None,
              now: dt.datetime, nonce: bytes | None) -> OcspAnswer:
        issuer = self.issuers[issuer_slug]
        name_hash, key_hash = self._id_of[(issuer_slug, algorithm)]
        this_update = now
        # A response must not outlive the certificate that signs it.
        next_update = min(now + (UNISSUED_VALIDITY if record is None else self.validity),
                          issuer.responder_certificate.not_valid_after_utc)
        status, revoked_at, reason = _status_of(record)
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(name_hash, key_hash, serial, CERT_ID_HASHES[algorithm], status, this_update,
                                  next_update, revoked_at, reason)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.responder_certificate)
            .certificates([issuer.responder_certificate])
        )
        if record is None:
            builder = builder.add_extension(EXTENDED_REVOKE, critical=False)
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(issuer.responder_key, hashes.SHA256())
        return OcspAnswer(response.public_bytes(serialization.Encoding.DER), OCSPResponseStatus.SUCCESSFUL,
                          this_update, next_update, cacheable=nonce is None,
                          certificate_status=_label(status, reason, issued=record is not None))

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)  # GeneralizedTime without fractions (RFC 5280)


def _describe(answer: OcspAnswer) -> str:
    """What HTTP and metrics need to know of a cached response, so that a cache hit never parses its DER."""
    return f"{int(answer.this_update.timestamp())}:{int(answer.next_update.timestamp())}:{answer.certificate_status}"


def _from_cache(der: bytes, about: bytes) -> OcspAnswer:
    """A cached response as served, its times and status read from the description kept alongside."""
    this_update, next_update, label = about.decode().split(":")
    return OcspAnswer(der, OCSPResponseStatus.SUCCESSFUL, dt.datetime.fromtimestamp(int(this_update), dt.UTC),
                      dt.datetime.fromtimestamp(int(next_update), dt.UTC), cacheable=True, certificate_status=label)


def _label(status: OCSPCertStatus, reason: x509.ReasonFlags | None, issued: bool) -> str:
    if not issued:
        return "not_issued"
    if status is OCSPCertStatus.GOOD:
        return "good"
    return "on_hold" if reason is x509.ReasonFlags.certificate_hold else "revoked"


def _status_of(record: StatusRecord | None) -> tuple[OCSPCertStatus, dt.datetime | None, x509.ReasonFlags | None]:
    if record is None:  # never issued: RFC 6960 §2.2
        return OCSPCertStatus.REVOKED, UNIX_EPOCH, x509.ReasonFlags.certificate_hold
    if record.status is CertificateStatus.GOOD:
        return OCSPCertStatus.GOOD, None, None
    if record.status is CertificateStatus.ON_HOLD:
        return OCSPCertStatus.REVOKED, record.revoked_at, x509.ReasonFlags.certificate_hold
    # RFC 5280 §5.3.1: rather leave the reason out than say "unspecified".
    reason = None if record.reason is x509.ReasonFlags.unspecified else record.reason
    return OCSPCertStatus.REVOKED, record.revoked_at, reason
