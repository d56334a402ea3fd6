"""Is this certificate revoked? Ask the platform's revocation service: OCSP first, the CRL as a fallback.

OCSP answers are accepted only when fresh and signed by the issuer or by a responder the issuer authorised
(RFC 6960 §4.2.2.2, Web eID's OcspResponseValidator). When OCSP cannot answer, the certificate's CRL shard is
fetched from the configured revocation base only, never from a URL the certificate chooses, and its nextUpdate is
enforced. When neither answers, the result is `RevocationUnknown`: this module fails closed and never turns
"could not tell" into "good".

No nonce, by design (decided with numbers, bench/login.py). The request carries no nonce, so the revocation
service answers from its pre-signed response (RFC 5019), dropped by every status change of the certificate and
signed again at the next request, instead of signing live with ECDSA for each login. Measured on the 2-core bench
machine (loaded), over several runs, CPU per login in the revocation service: 1.5-2.2 ms with a nonce, 0.7-1.3 ms
without (what is left is its HTTP server). What a nonce bought was protection against a recorded "good" being
replayed after a revocation; that needs all of:

- a position on the IdP→revocation channel: loopback in `make run`, the platform's own service over TLS (or a
  private network) in production — the same trust the IdP already places in its Redis, which holds its sessions;
- a response still inside its freshness bounds, enforced here: producedAt and thisUpdate not in the future (past
  CLOCK_SKEW) and at most OCSP_MAX_AGE old, nextUpdate present and not past (the responder's default validity is
  4 hours, and its cached copy is dropped an hour before nextUpdate);
- and it still would not be enough: the login reads the certificate's record from the status store — the store
  of record the OCSP responses are signed from — in the same request (idp/login/verification.py `check_record`,
  run by idp/login/bridge_api.py), and refuses a certificate whose record is revoked or on hold whatever OCSP
  said. A revoked card is refused on the very next login after the revocation event is applied
  (tests/test_login_coherence.py).

So a replayed "good" cannot pass a login, and the signed OCSP answer stays what the standards ask for: a
verifiable statement by the issuer, checked in full. `RevocationChecker(nonce=True)` still sends a nonce (RFC
9654) and then requires it echoed, for deployments whose revocation channel is not the platform's own.

What never changes per issuer is worked out once: the issuer's CertID hashes, and each delegated responder
certificate that proved its authority (issued by the issuer, id-kp-OCSPSigning); its validity is still checked
on every answer. Logs name the source and the reason a source failed; never a serial, a nonce or a URL carrying a
shard.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from idp.login.trust import TrustStore
from jpki.profile import CRL_ISSUER_SLUG, crl_shard, crl_url
from wire.fetch import Fetcher, FetchFailed, FetchPolicy

log = logging.getLogger(__name__)

NONCE_BYTES = 32  # RFC 9654 §2.1: the length a client sends (a responder accepts 1..128 octets)
MAX_OCSP_RESPONSE = 64 * 1024
MAX_CRL = 16 * 1024 * 1024
CLOCK_SKEW = dt.timedelta(minutes=5)  # tolerated only for "not in the future" checks
OCSP_MAX_AGE = dt.timedelta(days=1)  # thisUpdate older than this is stale even before nextUpdate
CRL_CACHE_SECONDS = 300.0
_RESPONDERS_REMEMBERED = 64  # responder certificates remembered per checker; forgotten all at once past this
NOT_ISSUED_REVOCATION_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # RFC 6960 §2.2, with extended revoke
# The only CRL paths the revocation service publishes (jpki.profile.crl_url): /crl/<issuer>/<shard>.crl
_CRL_PATH = re.compile(r"/crl/(auth|sign)/([0-9]{1,6})\.crl")


class RevocationStatus(enum.StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    ON_HOLD = "on_hold"


@dataclass(frozen=True)
class RevocationResult:
    status: RevocationStatus
    reason: x509.ReasonFlags | None
    source: str  # "ocsp" or "crl"
    ocsp_skipped: str | None = None  # why OCSP did not answer, when the CRL did (for logs)
    # The signed OCSP response (DER) the status came from: the evidence a document signature carries
    # (idp/signing/verification.py). None when the CRL answered.
    ocsp_response: bytes | None = field(default=None, repr=False)


class RevocationUnknown(Exception):
    """Neither OCSP nor the CRL gave a usable answer. The certificate must be refused (fail closed)."""

    code = "revocation_unknown"

    def __init__(self, ocsp_failure: str, crl_failure: str | None):
        super().__init__(f"revocation status unknown (ocsp: {ocsp_failure}; crl: {crl_failure or 'not tried'})")
        self.ocsp_failure = ocsp_failure
        self.crl_failure = crl_failure


class SourceFailed(Exception):
    """One source (OCSP or CRL) gave no usable answer. `reason` is a short code, safe to log.

    `final` marks an authoritative answer that another source must not override (OCSP "unknown").
    """

    def __init__(self, reason: str, final: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.final = final


def fetcher(timeout: float, limit: int) -> Fetcher:
    """Revocation traffic: http or https (the answers are signed; RFC 6960 Appendix A.1), no redirect away from
    the configured base, no proxy, bounded in size and total time, connections kept alive (wire/fetch.py). An
    OCSP POST is a query, so it may be resent once on a kept-alive connection the server had just closed."""
    return Fetcher(FetchPolicy(timeout=timeout, max_bytes=limit, schemes=frozenset({"http", "https"}),
                               idempotent_post=True))


def _source_failure(failed: FetchFailed) -> SourceFailed:
    if failed.reason == "http_status":
        return SourceFailed(f"http_{failed.answer.status}")
    return SourceFailed("url_not_http" if failed.reason == "url_not_allowed" else failed.reason)


@dataclass(frozen=True)
class _Responder:
    """A delegated responder certificate that proved its authority from an issuer (RFC 6960 §4.2.2.2): issued by
    it, with id-kp-OCSPSigning. Immutable facts, so worked out once; validity is checked against each answer."""

    certificate: x509.Certificate
    public_key: object
    not_before: dt.datetime
    not_after: dt.datetime


class RevocationChecker:
    def __init__(self, ocsp_url: str, crl_base_url: str | None, trust: TrustStore, timeout: float = 3.0,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 crl_cache_seconds: float = CRL_CACHE_SECONDS, nonce: bool = False):
        self.ocsp_url = ocsp_url
        self.crl_base_url = crl_base_url.rstrip("/") if crl_base_url else None
        self.trust = trust
        self.timeout = timeout
        self.clock = clock
        self.crl_cache_seconds = crl_cache_seconds
        self.nonce = nonce  # see the module docstring: off unless the revocation channel is not the platform's own
        self._cert_ids: dict[x509.Certificate, tuple[bytes, bytes]] = {}  # issuer → (name hash, key hash), SHA-256
        self._responders: dict[tuple[x509.Certificate, x509.Certificate], _Responder | None] = {}
        self._crl_cache: dict[str, tuple[x509.CertificateRevocationList, dt.datetime]] = {}
        self._ocsp_fetcher = fetcher(timeout, MAX_OCSP_RESPONSE)
        self._crl_fetcher = fetcher(timeout, MAX_CRL)
        self._lock = threading.Lock()

    def check(self, cert: x509.Certificate, issuer: x509.Certificate) -> RevocationResult:
        """The certificate's status, from OCSP or else the CRL. Raises RevocationUnknown when neither answers."""
        if self.trust.kind_of(issuer) is None:
            raise ValueError("The issuer passed to the revocation check is not a pinned root.")
        try:
            result = self.check_ocsp(cert, issuer)
            log.info("revocation status from ocsp: %s", result.status.value)
            return result
        except SourceFailed as failure:
            ocsp_failure = failure
        if ocsp_failure.final or self.crl_base_url is None:
            log.warning("revocation status unknown: ocsp %s; no crl fallback", ocsp_failure.reason)
            raise RevocationUnknown(ocsp_failure.reason, None)
        try:
            result = self.check_crl(cert, issuer)
        except SourceFailed as crl_failure:
            log.warning("revocation status unknown: ocsp %s; crl %s", ocsp_failure.reason, crl_failure.reason)
            raise RevocationUnknown(ocsp_failure.reason, crl_failure.reason) from None
        log.info("revocation status from crl (ocsp skipped: %s): %s", ocsp_failure.reason, result.status.value)
        return RevocationResult(result.status, result.reason, "crl", ocsp_skipped=ocsp_failure.reason)

    # --- OCSP (RFC 6960) ------------------------------------------------------------------------------

    def check_ocsp(self, cert: x509.Certificate, issuer: x509.Certificate) -> RevocationResult:
        name_hash, key_hash = self._cert_id(cert, issuer)
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, cert.serial_number,
                                                                    hashes.SHA256())
        nonce = secrets.token_bytes(NONCE_BYTES) if self.nonce else None
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        request = builder.build()
        try:
            raw = self._ocsp_fetcher.fetch(self.ocsp_url, request.public_bytes(Encoding.DER),
                                           "application/ocsp-request").body
        except FetchFailed as failed:
            raise _source_failure(failed) from None
        try:
            response = ocsp.load_der_ocsp_response(raw)
        except ValueError:
            raise SourceFailed("malformed") from None
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            # tryLater, internalError …: RFC 6960 §2.3 — no status information; fall back.
            raise SourceFailed(f"response_{response.response_status.name.lower()}")
        try:
            return replace(self._accept_ocsp(response, request, nonce, issuer), ocsp_response=raw)
        except (ValueError, UnsupportedAlgorithm):  # cryptography parses parts of the response lazily
            raise SourceFailed("malformed") from None

    def _cert_id(self, cert: x509.Certificate, issuer: x509.Certificate) -> tuple[bytes, bytes]:
        """The issuer's half of a SHA-256 CertID (RFC 6960 §4.1.1), computed by cryptography once per issuer."""
        cert_id = self._cert_ids.get(issuer)
        if cert_id is None:
            probe = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
            cert_id = self._cert_ids[issuer] = (probe.issuer_name_hash, probe.issuer_key_hash)
        return cert_id

    def _accept_ocsp(self, response: ocsp.OCSPResponse, request: ocsp.OCSPRequest, nonce: bytes | None,
                     issuer: x509.Certificate) -> RevocationResult:
        now = self.clock()
        check_ocsp_signature(response, issuer, now, self._responder)
        if nonce is not None:
            check_ocsp_nonce(response, nonce)
        single = matching_single_response(response, request)
        check_ocsp_produced(response, now)
        check_ocsp_freshness(single, now)
        if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
            return RevocationResult(RevocationStatus.GOOD, None, "ocsp")
        # "unknown", or RFC 6960 §2.2's "revoked, certificateHold, since 1970-01-01" for a serial the responder
        # never saw issued: a CRL cannot prove the certificate is known either, so these answers are final —
        # falling back would turn "never issued" into "good". Not "on hold": the holder did nothing.
        if single.certificate_status is ocsp.OCSPCertStatus.UNKNOWN:
            raise SourceFailed("certificate_unknown", final=True)
        if (single.revocation_reason is x509.ReasonFlags.certificate_hold
                and single.revocation_time_utc == NOT_ISSUED_REVOCATION_TIME):
            raise SourceFailed("certificate_not_issued", final=True)
        return _revoked(single.revocation_reason, "ocsp")

    def _responder(self, candidate: x509.Certificate, issuer: x509.Certificate) -> _Responder | None:
        """`candidate` as a responder `issuer` authorised, or None; remembered per issuer and certificate (a
        bounded handful: one responder per issuer and generation, a refused one at most as often as it is sent)."""
        key = (issuer, candidate)  # certificates compare and hash by their DER
        with self._lock:
            known = key in self._responders
            authorised = self._responders.get(key)
        if not known:
            authorised = authorised_by(candidate, issuer)
            with self._lock:
                if len(self._responders) >= _RESPONDERS_REMEMBERED:
                    self._responders.clear()
                self._responders[key] = authorised
        return authorised

    # --- CRL (RFC 5280 §6.3) --------------------------------------------------------------------------

    def check_crl(self, cert: x509.Certificate, issuer: x509.Certificate) -> RevocationResult:
        url = self.pinned_crl_url(cert, issuer)
        crl = self._cached_crl(url)
        if crl is None:
            crl = self._fetch_crl(url, issuer)
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            return RevocationResult(RevocationStatus.GOOD, None, "crl")
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        return _revoked(reason, "crl")

    def pinned_crl_url(self, cert: x509.Certificate, issuer: x509.Certificate) -> str:
        """The CRL URL under the configured base. The certificate may only say which shard it is in."""
        kind = self.trust.kind_of(issuer)
        slug = CRL_ISSUER_SLUG[kind]
        for path in _crl_paths(cert):
            match = _CRL_PATH.fullmatch(path)
            if match and match.group(1) == slug:
                return f"{self.crl_base_url}{path}"
        # No distribution point of our own shape (e.g. a J-LIS URL): use the shard the serial was filed under.
        return crl_url(self.crl_base_url, kind, crl_shard(cert.serial_number))

    def _cached_crl(self, url: str) -> x509.CertificateRevocationList | None:
        with self._lock:
            cached = self._crl_cache.get(url)
        if cached is None:
            return None
        crl, fetched_at = cached
        now = self.clock()
        if now > crl.next_update_utc or (now - fetched_at).total_seconds() > self.crl_cache_seconds:
            return None
        return crl

    def _fetch_crl(self, url: str, issuer: x509.Certificate) -> x509.CertificateRevocationList:
        try:
            raw = self._crl_fetcher.fetch(url).body
        except FetchFailed as failed:
            raise _source_failure(failed) from None
        try:
            crl = x509.load_der_x509_crl(raw)
        except ValueError:
            raise SourceFailed("crl_malformed") from None
        now = self.clock()
        check_crl(crl, issuer, url, now)
        with self._lock:
            self._crl_cache[url] = (crl, now)
        return crl


# --- the checks, one rule each -----------------------------------------------------------------------


def check_ocsp_nonce(response: ocsp.OCSPResponse, nonce: bytes) -> None:
    """Our nonce, echoed (RFC 9654, Web eID): without it a recorded "good" could be replayed after revocation."""
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        raise SourceFailed("nonce_missing") from None
    if not secrets.compare_digest(echoed, nonce):
        raise SourceFailed("nonce_mismatch")


def check_ocsp_signature(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime,
                         responder: Callable[[x509.Certificate, x509.Certificate], _Responder | None] | None = None,
                         ) -> None:
    """Signed by the issuer itself or by a responder it authorised (RFC 6960 §4.2.2.2). `responder` may remember
    which certificates proved their authority (RevocationChecker does); by default each is checked afresh."""
    signer = authorised_responder_key(response, issuer, now, responder)
    try:
        verify_signed(signer, response.signature, response.tbs_response_bytes, response.signature_hash_algorithm)
    except InvalidSignature:
        raise SourceFailed("signature_invalid") from None


def authorised_responder_key(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime,
                             responder: Callable[[x509.Certificate, x509.Certificate], _Responder | None] | None
                             = None):
    if _is_responder(issuer, response):
        return issuer.public_key()
    for candidate in response.certificates:
        # Certificates in the response are untrusted input: each must prove its authority from the issuer.
        if not _is_responder(candidate, response):
            continue
        authorised = (responder or authorised_by)(candidate, issuer)
        if authorised is None:
            continue
        if not authorised.not_before <= now <= authorised.not_after:
            continue
        return authorised.public_key
    raise SourceFailed("responder_unauthorised")


def authorised_by(candidate: x509.Certificate, issuer: x509.Certificate) -> _Responder | None:
    """`candidate` as a delegated responder of `issuer` (RFC 6960 §4.2.2.2), or None: issued directly by it, with
    id-kp-OCSPSigning in its extendedKeyUsage. Validity depends on the time, so the caller checks it."""
    try:
        candidate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return None
    if not _has_ocsp_signing(candidate):
        return None
    return _Responder(candidate, candidate.public_key(), candidate.not_valid_before_utc,
                      candidate.not_valid_after_utc)


def _is_responder(cert: x509.Certificate, response: ocsp.OCSPResponse) -> bool:
    """Does `cert` match the ResponderID, byName or byKey (RFC 6960 §4.2.1)?"""
    if response.responder_name is not None:
        return cert.subject == response.responder_name
    return _key_hash(cert) == response.responder_key_hash


@functools.lru_cache(maxsize=64)  # the issuers and their responders: a handful of certificates, asked every login
def _key_hash(cert: x509.Certificate) -> bytes:
    """byKey is SHA-1 of the subjectPublicKey BIT STRING, the same hash as an RFC 5280 method-1 key id."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _has_ocsp_signing(cert: x509.Certificate) -> bool:
    return ExtendedKeyUsageOID.OCSP_SIGNING in (_extension(cert.extensions, x509.ExtendedKeyUsage) or ())


def verify_signed(public_key, signature: bytes, data: bytes, hash_algorithm: hashes.HashAlgorithm | None) -> None:
    """Raise InvalidSignature unless `signature` over `data` verifies under `public_key`."""
    if isinstance(public_key, rsa.RSAPublicKey) and hash_algorithm is not None:
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        public_key.verify(signature, data)
    else:
        raise InvalidSignature("unsupported responder key")


def matching_single_response(response: ocsp.OCSPResponse, request: ocsp.OCSPRequest) -> ocsp.OCSPSingleResponse:
    """The SingleResponse whose CertID is the one we asked about (RFC 6960 §3.2 item 1)."""
    for single in response.responses:
        if (single.serial_number == request.serial_number
                and type(single.hash_algorithm) is type(request.hash_algorithm)
                and single.issuer_name_hash == request.issuer_name_hash
                and single.issuer_key_hash == request.issuer_key_hash):
            return single
    raise SourceFailed("certid_mismatch")


def check_ocsp_produced(response: ocsp.OCSPResponse, now: dt.datetime) -> None:
    """producedAt (RFC 6960 §4.2.1) bounded like thisUpdate: without a nonce, the age of the signature is what
    bounds a replay, so a response signed in the future or longer ago than OCSP_MAX_AGE is not current."""
    if response.produced_at_utc > now + CLOCK_SKEW:
        raise SourceFailed("not_yet_valid")
    if now - response.produced_at_utc > OCSP_MAX_AGE:
        raise SourceFailed("stale")


def check_ocsp_freshness(single: ocsp.OCSPSingleResponse, now: dt.datetime) -> None:
    """RFC 6960 §3.2 items 4–6: thisUpdate recent and not in the future; nextUpdate present and not past."""
    if single.this_update_utc > now + CLOCK_SKEW:
        raise SourceFailed("not_yet_valid")
    if now - single.this_update_utc > OCSP_MAX_AGE:
        raise SourceFailed("stale")
    # Without nextUpdate the responder makes no promise about freshness (§4.2.2.1); refuse it.
    if single.next_update_utc is None:
        raise SourceFailed("no_next_update")
    if now > single.next_update_utc:
        raise SourceFailed("stale")


def check_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, url: str, now: dt.datetime) -> None:
    """RFC 5280 §6.3.3: issued and signed by the issuer, current, complete, and for the shard we asked for."""
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
        raise SourceFailed("crl_signature_invalid")
    if crl.last_update_utc > now + CLOCK_SKEW:
        raise SourceFailed("crl_not_yet_valid")
    if crl.next_update_utc is None or now > crl.next_update_utc:  # §6.3.3 (a)(2): nextUpdate enforced
        raise SourceFailed("crl_stale")
    if _extension(crl.extensions, x509.DeltaCRLIndicator) is not None:
        raise SourceFailed("crl_is_delta")  # a delta alone is not a complete list (§5.2.4)
    scope = _extension(crl.extensions, x509.IssuingDistributionPoint)
    if scope is None:
        return
    # §6.3.3 (b)(2)(i): a shard CRL must be the shard we asked for, or another shard's CRL (in which the serial is
    # absent) would pass for "good".
    wanted = urllib.parse.urlsplit(url).path
    names = [urllib.parse.urlsplit(n.value).path for n in scope.full_name or ()
             if isinstance(n, x509.UniformResourceIdentifier)]
    if scope.full_name is not None and wanted not in names:
        raise SourceFailed("crl_scope_mismatch")
    if scope.only_contains_ca_certs or scope.only_contains_attribute_certs or scope.only_some_reasons:
        raise SourceFailed("crl_scope_mismatch")


def _extension(extensions: x509.Extensions, kind: type[x509.ExtensionType]):
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _crl_paths(cert: x509.Certificate) -> list[str]:
    points = _extension(cert.extensions, x509.CRLDistributionPoints) or ()
    return [urllib.parse.urlsplit(name.value).path for point in points for name in point.full_name or ()
            if isinstance(name, x509.UniformResourceIdentifier)]


def _revoked(reason: x509.ReasonFlags | None, source: str) -> RevocationResult:
    # certificateHold is the one reversible state (RFC 5280 §5.3.1; docs/jpki-profile.md §4: card lost, suspension).
    if reason is x509.ReasonFlags.certificate_hold:
        return RevocationResult(RevocationStatus.ON_HOLD, reason, source)
    return RevocationResult(RevocationStatus.REVOKED, reason, source)
