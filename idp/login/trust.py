"""The IdP's pinned trust anchors: which root may issue auth certificates and which may issue signing ones.

Roots come only from configuration, never from a card: the card's EF 000B/0002 hold "its" CA certificate, and
trusting that would let anyone bring their own CA (docs/jpki-profile.md §1). In production every root must
match a pinned SHA-256 fingerprint (J-LIS's roots, docs/jpki-profile.md §3) or the IdP refuses to start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jpki.issuer import Issuer
from jpki.profile import JLIS_ROOT_FINGERPRINTS, CertificateKind

# The production profile: J-LIS's own roots, one per generation (docs/jpki-profile.md §3).
PRODUCTION_FINGERPRINTS: Mapping[CertificateKind, Mapping[str, str]] = JLIS_ROOT_FINGERPRINTS


class TrustStoreError(ValueError):
    """The trust store cannot be built as configured; the IdP must not start."""


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 over the DER certificate, upper-case hex without separators (as in jpki.profile)."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def _normalise(value: str) -> str:
    return value.replace(":", "").replace(" ", "").upper()


@dataclass(frozen=True)
class TrustStore:
    """Pinned roots per certificate kind. A root pinned for one kind never vouches for the other."""

    roots: Mapping[CertificateKind, tuple[x509.Certificate, ...]]

    def roots_for(self, kind: CertificateKind) -> tuple[x509.Certificate, ...]:
        return self.roots.get(kind, ())

    def candidate_issuers(self, certificate: x509.Certificate, kind: CertificateKind) -> list[x509.Certificate]:
        """The pinned roots of `kind` whose subject is the certificate's issuer (RFC 5280 §6.1.3 (a)(4))."""
        return [root for root in self.roots_for(kind) if root.subject == certificate.issuer]

    def kind_of(self, root: x509.Certificate) -> CertificateKind | None:
        """Which kind a pinned root vouches for; None when it is not pinned here."""
        for kind, roots in self.roots.items():
            if root in roots:
                return kind
        return None

    # --- building -------------------------------------------------------------------------------------

    @classmethod
    def development(cls, issuers: Iterable[Issuer]) -> TrustStore:
        """The development CA's roots ("dev J-LIS"), given as its issuers (`DevCA.auth`, `DevCA.signing`), so this
        module never imports the development CA. Never used with production fingerprints."""
        roots: dict[CertificateKind, tuple[x509.Certificate, ...]] = {}
        for issuer in issuers:
            roots[issuer.kind] = (*roots.get(issuer.kind, ()), issuer.certificate)
        return cls(roots)

    @classmethod
    def from_directory(cls, directory: Path, extra_pins: Iterable[tuple[CertificateKind, str]] = ()) -> TrustStore:
        """The production layout (docs/configuration.md): `auth-*.pem` and `signing-*.pem` in one directory, each
        root pinned by J-LIS's fingerprints or by one of `extra_pins` that the operator configured deliberately."""
        if not directory.is_dir():
            raise TrustStoreError(f"The trust directory {directory} does not exist (IDP_TRUST_DIR).")
        pins = {kind: dict(fingerprints) for kind, fingerprints in PRODUCTION_FINGERPRINTS.items()}
        for number, (kind, digest) in enumerate(extra_pins):
            pins.setdefault(kind, {})[f"configured-{number}"] = digest
        return cls.from_pem_files(auth=sorted(directory.glob("auth-*.pem")),
                                  signing=sorted(directory.glob("signing-*.pem")), fingerprints=pins)

    @classmethod
    def from_pem_files(cls, auth: Iterable[str | Path], signing: Iterable[str | Path],
                       fingerprints: Mapping[CertificateKind, Mapping[str, str]] = PRODUCTION_FINGERPRINTS,
                       ) -> TrustStore:
        """Roots read from PEM files, each of which must match a fingerprint pinned for its kind."""
        roots = {CertificateKind.AUTH: _load_pinned(auth, CertificateKind.AUTH, fingerprints),
                 CertificateKind.SIGNING: _load_pinned(signing, CertificateKind.SIGNING, fingerprints)}
        for kind, found in roots.items():
            if not found:
                raise TrustStoreError(f"No {kind.value} root was configured; the IdP cannot verify "
                                      f"{kind.value} certificates without one.")
        return cls(roots)


def _load_pinned(paths: Iterable[str | Path], kind: CertificateKind,
                 fingerprints: Mapping[CertificateKind, Mapping[str, str]]) -> tuple[x509.Certificate, ...]:
    pinned = {_normalise(value) for value in fingerprints.get(kind, {}).values()}
    roots: list[x509.Certificate] = []
    for path in paths:
        try:
            certificates = x509.load_pem_x509_certificates(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise TrustStoreError(f"Cannot read a root certificate from {path}: {exc}") from exc
        for certificate in certificates:
            found = fingerprint(certificate)
            # A root fingerprint is public information, so naming it helps the operator and leaks nothing.
            if found not in pinned:
                raise TrustStoreError(
                    f"The certificate in {path} (SHA-256 {found}) is not a pinned {kind.value} root; "
                    "refusing to trust it. Check the file, or pin its fingerprint deliberately.")
            roots.append(certificate)
    return tuple(roots)
