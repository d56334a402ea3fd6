"""Certificate and signature verification for login and for releasing the four basic facts.

A pipeline in the manner of Web eID's authtoken validation: one function per rule, run in this order, each
failing with a `VerificationError` whose `code` is stable (pages, JSON API, logs and tests all use it):

1. `check_size_and_shape`  — proof_malformed: bounded sizes, a 256-byte signature, a known token type
2. `check_parses`          — certificate_malformed / not_jpki_certificate (jpki.certificate.parse_certificate)
3. `check_policy`          — the kind the flow needs: an auth certificate logs in, a signing one releases facts
4. `check_key_usage`       — key_usage_invalid (docs/jpki-profile.md §3; an end-entity, never a CA)
5. `check_chain`           — untrusted_issuer: directly issued by a pinned root (RFC 5280 §6.1)
6. `check_validity`        — certificate_expired / certificate_not_yet_valid
7. `check_signature`       — signature_invalid: RSASSA-PKCS1-v1_5/SHA-256 over the expected message
8. `check_revocation`      — certificate_revoked / certificate_on_hold / revocation_unknown (fail closed)

and then, by the login flow once the pipeline passed (idp/login/bridge_api.py), with the record it read from the
status store (idp/certificate_records.py) in the same round trip as the account mapping:

9. `check_record`          — revocation_unknown (never issued) / certificate_revoked / certificate_on_hold

The status store is what the OCSP responses are signed from, so on an honest channel the two agree; the record is
read on every login, after the revocation check, so a revocation applied before the login is refused even if an
OCSP answer were replayed or cached (idp/login/revocation_check.py says why the request carries no nonce).

The token type ("card" or "smartphone", where the JPKI AP lives) is the bridge's word: a phone's certificate is
issued by the same J-LIS CA under the same policy as a card's, so nothing in the certificate can contradict it.
It is checked for shape only, and callers must pass it (no default): it decides the `amr` a relying party sees
(`AUTHENTICATION_METHODS`), so a caller that forgot it would silently report every login as a card login.

The signature comes before revocation, unlike the order the checks are listed in docs/design.md flow 1: an auth
certificate is readable from a card without its PIN, so checking revocation first would let anyone holding a copy
learn from the error code whether the holder's card is revoked or reported lost. A bad signature costs no OCSP trip.

Messages are sentences for a person; they never contain a serial, a signature, a challenge or a fact.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from idp.certificate_records import CertificateRecord, Standing
from idp.login.revocation_check import RevocationChecker, RevocationResult, RevocationStatus, RevocationUnknown
from idp.login.trust import TrustStore
from jpki.certificate import MAX_CERTIFICATE_DER, CertificateError, JpkiCertificate, parse_certificate
from jpki.profile import (
    AUTH_KEY_USAGE_REQUIRED,
    CRL_ISSUER_SLUG,
    RSA_SIGNATURE_LENGTH,
    SIGN_KEY_USAGE_REQUIRED,
    CertificateKind,
)
from jpki.signature import history_message, login_message, verify_signature
from wire.errors import CodedError

CARD, SMARTPHONE = "card", "smartphone"  # where the JPKI AP lives (docs/jpki-profile.md §1: token file EF 0006)
TOKEN_TYPES = frozenset({CARD, SMARTPHONE})

# What a verified login shows about how it was made, as RFC 8176 §2 method values (docs/relying-parties.md).
# A card: a hardware-secured key ("hwk") on a smart card ("sc"), usable only after its PIN ("pin").
# A phone: a hardware-secured key in its secure element, unlocked by the PIN or by the phone's biometrics, which
# the IdP cannot tell apart, so "mfa" (RFC 8176: multiple factors) rather than claiming either.
AUTHENTICATION_METHODS: dict[str, tuple[str, ...]] = {CARD: ("hwk", "pin", "sc"), SMARTPHONE: ("hwk", "mfa")}
MAX_SIGNED_MESSAGE = 64 * 1024


class ErrorCode(enum.StrEnum):
    PROOF_MALFORMED = "proof_malformed"
    CERTIFICATE_MALFORMED = "certificate_malformed"
    NOT_JPKI_CERTIFICATE = "not_jpki_certificate"
    SIGNING_CERTIFICATE_USED_FOR_LOGIN = "signing_certificate_used_for_login"
    AUTH_CERTIFICATE_USED_FOR_SIGNING = "auth_certificate_used_for_signing"
    KEY_USAGE_INVALID = "key_usage_invalid"
    UNTRUSTED_ISSUER = "untrusted_issuer"
    CERTIFICATE_EXPIRED = "certificate_expired"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    CERTIFICATE_REVOKED = "certificate_revoked"
    CERTIFICATE_ON_HOLD = "certificate_on_hold"
    REVOCATION_UNKNOWN = "revocation_unknown"
    SIGNATURE_INVALID = "signature_invalid"
    # Raised by the login flow after both pipelines passed: the signing certificate is not the auth one's twin.
    CERTIFICATES_NOT_LINKED = "certificates_not_linked"
    # Document signing (idp/signing/verification.py): the CMS signed attributes are not the agreed set.
    SIGNED_ATTRIBUTES_INVALID = "signed_attributes_invalid"


class VerificationError(CodedError):
    """A proof was refused. `code` is one of ErrorCode; `message` is safe to show and to log."""

    def __init__(self, code: ErrorCode | str, message: str):
        super().__init__(ErrorCode(code), message)


@dataclass(frozen=True)
class VerifiedCertificate:
    certificate: JpkiCertificate
    issuer: str  # "auth" or "signing" (jpki.profile.CRL_ISSUER_SLUG)
    revocation: RevocationResult
    token_type: str  # CARD or SMARTPHONE, as the bridge said (checked for shape only)

    def __repr__(self) -> str:  # JpkiCertificate's repr already keeps the serial out
        return f"VerifiedCertificate({self.certificate!r}, revocation={self.revocation.status.value})"


# --- the checks, in pipeline order ---------------------------------------------------------------------


def check_size_and_shape(certificate_der: object, signature: object, token_type: object) -> None:
    """Bound everything before parsing anything (Web eID: token format)."""
    if not isinstance(certificate_der, bytes) or not 0 < len(certificate_der) <= MAX_CERTIFICATE_DER:
        raise VerificationError(ErrorCode.PROOF_MALFORMED,
                                "The certificate sent with the login is missing or larger than any JPKI certificate.")
    if not isinstance(signature, bytes) or len(signature) != RSA_SIGNATURE_LENGTH:
        raise VerificationError(ErrorCode.PROOF_MALFORMED,
                                "The signature does not have the length of a My Number Card signature.")
    if token_type not in TOKEN_TYPES:
        raise VerificationError(ErrorCode.PROOF_MALFORMED, "The login came from an unknown kind of device.")


def check_parses(certificate_der: bytes) -> JpkiCertificate:
    try:
        return parse_certificate(certificate_der)
    except CertificateError as exc:  # its code is certificate_malformed or not_jpki_certificate
        raise VerificationError(exc.code, exc.message) from None


def check_policy(certificate: JpkiCertificate, expected: CertificateKind) -> None:
    """The JPKI policy OID decides the kind (docs/jpki-profile.md §3): login needs auth; the four facts, signing."""
    if certificate.kind is not expected:
        if expected is CertificateKind.AUTH:
            raise VerificationError(ErrorCode.SIGNING_CERTIFICATE_USED_FOR_LOGIN,
                                    "A signing certificate cannot be used to log in; use the user-authentication "
                                    "certificate (4-digit PIN).")
        raise VerificationError(ErrorCode.AUTH_CERTIFICATE_USED_FOR_SIGNING,
                                "The user-authentication certificate cannot release your basic facts; the signing "
                                "certificate (6–16 character PIN) is needed.")
    # RFC 5280 §4.2: a critical extension we do not understand means we cannot know what the CA meant.
    for extension in certificate.certificate.extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            raise VerificationError(ErrorCode.NOT_JPKI_CERTIFICATE,
                                    "The certificate has a critical extension that JPKI certificates do not have.")


def check_key_usage(certificate: JpkiCertificate) -> None:
    """keyUsage digitalSignature for both kinds (docs/jpki-profile.md §3); no EKU required. An end entity only."""
    required = AUTH_KEY_USAGE_REQUIRED if certificate.kind is CertificateKind.AUTH else SIGN_KEY_USAGE_REQUIRED
    if not required <= certificate.key_usage or certificate.key_usage & {"key_cert_sign", "crl_sign"}:
        raise VerificationError(ErrorCode.KEY_USAGE_INVALID, "The certificate is not allowed to make this signature.")
    try:
        is_ca = certificate.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        raise VerificationError(ErrorCode.KEY_USAGE_INVALID, "A CA certificate cannot be used to log in or sign.")


def check_chain(certificate: JpkiCertificate, trust: TrustStore, now: dt.datetime) -> x509.Certificate:
    """Directly issued by a root pinned for this kind; returns that root (RFC 5280 §6.1.3).

    JPKI issues end-entity certificates straight from the J-LIS root, so a path is one signature long. The card's
    own CA file (EF 000B/0002) is never consulted. cryptography's PolicyBuilder is not used: its web-PKI profile
    refuses certificates without subjectAltName, and it folds validity into path building, which would hide the
    expired/not-yet-valid distinction the pipeline reports in `check_validity`.
    """
    cert = certificate.certificate
    for root in trust.candidate_issuers(cert, certificate.kind):
        if not _key_ids_agree(cert, root):
            continue
        try:
            cert.verify_directly_issued_by(root)  # issuer name and signature (§6.1.3 (a)(1), (a)(4))
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        if _usable_root(root, now):
            return root
    raise VerificationError(ErrorCode.UNTRUSTED_ISSUER,
                            "The certificate was not issued by the JPKI certificate authority this service trusts.")


def _key_ids_agree(cert: x509.Certificate, root: x509.Certificate) -> bool:
    """When both carry key identifiers, they must agree (RFC 5280 §4.2.1.1); this picks the right generation."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return True
    return aki is None or aki == ski


def _usable_root(root: x509.Certificate, now: dt.datetime) -> bool:
    """A CA allowed to sign certificates (§4.2.1.9, §4.2.1.3), within its own validity."""
    try:
        ca = root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        cert_sign = root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return False
    return ca and cert_sign and root.not_valid_before_utc <= now <= root.not_valid_after_utc


def check_validity(certificate: JpkiCertificate, now: dt.datetime) -> None:
    if now < certificate.not_before:
        raise VerificationError(ErrorCode.CERTIFICATE_NOT_YET_VALID,
                                "The certificate is not valid yet. Check the date and time of this device's clock "
                                "or try again later.")
    if now > certificate.not_after:
        raise VerificationError(ErrorCode.CERTIFICATE_EXPIRED,
                                "The certificate on the card has expired. It can be renewed at the municipal office.")


_ON_HOLD = ("The certificate is suspended, for example because the card was reported lost. The municipal office or "
            "the JPKI call centre can lift the suspension.")
_REVOKED = "The certificate has been revoked and can no longer be used."


def check_revocation(certificate: JpkiCertificate, issuer: x509.Certificate,
                     checker: RevocationChecker) -> RevocationResult:
    try:
        result = checker.check(certificate.certificate, issuer)
    except RevocationUnknown:
        raise VerificationError(ErrorCode.REVOCATION_UNKNOWN,
                                "The certificate's status could not be checked right now. Please try again in a few "
                                "minutes.") from None
    if result.status is RevocationStatus.ON_HOLD:
        raise VerificationError(ErrorCode.CERTIFICATE_ON_HOLD, _ON_HOLD)
    if result.status is not RevocationStatus.GOOD:
        raise VerificationError(ErrorCode.CERTIFICATE_REVOKED, _REVOKED)
    return result


def check_record(record: CertificateRecord | None) -> None:
    """The status store's own record: the certificate was issued, and is neither revoked nor on hold now.

    The CRL fallback cannot say "never issued"; the store can (a serial never issued is never good). A record that
    disagrees with a "good" from OCSP is believed over it: it is the source the responses are signed from."""
    if record is None:
        raise VerificationError(ErrorCode.REVOCATION_UNKNOWN,
                                "This certificate is not known to the revocation service.")
    if record.standing is Standing.ON_HOLD:
        raise VerificationError(ErrorCode.CERTIFICATE_ON_HOLD, _ON_HOLD)
    if record.standing is not Standing.GOOD:
        raise VerificationError(ErrorCode.CERTIFICATE_REVOKED, _REVOKED)


def check_signature(certificate: JpkiCertificate, message: bytes, signature: bytes) -> None:
    if not verify_signature(certificate.public_key, message, signature):
        raise VerificationError(ErrorCode.SIGNATURE_INVALID,
                                "The card's signature does not match this login. Please start the login again.")


# --- the pipeline ---------------------------------------------------------------------------------------


class CertificateVerifier:
    def __init__(self, trust: TrustStore, revocation_checker: RevocationChecker,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)):
        self.trust = trust
        self.revocation_checker = revocation_checker
        self.clock = clock

    def verify_login(self, certificate_der: bytes, signature: bytes, origin: str, challenge: bytes, *,
                     token_type: str) -> VerifiedCertificate:
        """Flow 1: the auth key signed `SHA-256(origin) ‖ SHA-256(challenge)` (Web eID)."""
        if not isinstance(origin, str) or not origin or not isinstance(challenge, bytes) or not challenge:
            raise ValueError("origin and challenge come from the login transaction and must be set")
        return self._verify(certificate_der, signature, login_message(origin, challenge), token_type,
                            CertificateKind.AUTH)

    def verify_history(self, certificate_der: bytes, signature: bytes, origin: str, *,
                       token_type: str) -> VerifiedCertificate:
        """Opening the access record: the auth key signed this platform's history message (jpki.signature), the
        same checks as a login. The signature is then the holder's key (mykey/record.py): callers keep it in memory
        only."""
        if not isinstance(origin, str) or not origin:
            raise ValueError("the origin comes from the IdP's configuration and must be set")
        return self._verify(certificate_der, signature, history_message(origin), token_type, CertificateKind.AUTH)

    def verify_signing(self, certificate_der: bytes, signature: bytes, message: bytes, *,
                       token_type: str) -> VerifiedCertificate:
        """The signing key signed `message`; on success the certificate's four basic facts may be released."""
        if not isinstance(message, bytes) or not 0 < len(message) <= MAX_SIGNED_MESSAGE:
            raise ValueError("the message to verify is built by the IdP and must be 1..64 KiB")
        return self._verify(certificate_der, signature, message, token_type, CertificateKind.SIGNING)

    def _verify(self, certificate_der: bytes, signature: bytes, message: bytes, token_type: str,
                kind: CertificateKind) -> VerifiedCertificate:
        now = self.clock()
        check_size_and_shape(certificate_der, signature, token_type)
        certificate = check_parses(certificate_der)
        check_policy(certificate, kind)
        check_key_usage(certificate)
        issuer = check_chain(certificate, self.trust, now)
        check_validity(certificate, now)
        check_signature(certificate, message, signature)
        revocation = check_revocation(certificate, issuer, self.revocation_checker)
        return VerifiedCertificate(certificate, CRL_ISSUER_SLUG[kind], revocation, token_type)
