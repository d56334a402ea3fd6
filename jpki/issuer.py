"""Issuer material: an issuing CA's certificate and key with its delegated OCSP responder, and its one file layout.

`Issuer` is the value the revocation service signs with (CRLs with the CA's key, OCSP responses with the
responder's) and the development CA issues with. Production and development keep it on disk in the same layout,
the one docs/configuration.md documents for `REVOCATION_ISSUERS`; per issuer slug (`auth`, `signing`):

| file | holds |
|---|---|
| `<slug>-ca.pem` | the issuing CA's certificate |
| `<slug>-crl-signer.key.pem` | the CA's own key: the CA signs its CRLs itself (no indirect CRL, RFC 5280 §5.2.5) |
| `<slug>-ocsp.pem`, `<slug>-ocsp.key.pem` | the delegated OCSP responder's certificate and key (RFC 6960 §4.2.2.2) |

Keys are unencrypted PKCS #8 PEM, written 0600. The development CA saves exactly these files (its CA key is the
`crl-signer` key, which it also issues with) plus `ca.json`. `load_issuers` and `save_issuers` are the only code
that knows the names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jpki.profile import CRL_ISSUER_SLUG, CertificateKind
from wire.errors import FixedCodeError

DEFAULT_REVOCATION_URL = "http://127.0.0.1:8081"  # development only: devstack's revocation port
CA_CERTIFICATE = "{slug}-ca.pem"
CA_KEY = "{slug}-crl-signer.key.pem"
RESPONDER_CERTIFICATE = "{slug}-ocsp.pem"
RESPONDER_KEY = "{slug}-ocsp.key.pem"
ISSUER_FILES = (CA_CERTIFICATE, CA_KEY, RESPONDER_CERTIFICATE, RESPONDER_KEY)


@dataclass(frozen=True)
class Issuer:
    """One root (auth or signing) with its delegated OCSP responder."""

    kind: CertificateKind
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    responder_key: ec.EllipticCurvePrivateKey
    responder_certificate: x509.Certificate


class IssuerFilesMissing(FixedCodeError):
    """A directory lacks some of the issuer files; `missing` names them (file names only, never contents)."""

    code = "issuer_files_missing"

    def __init__(self, directory: Path, missing: list[str], advice: str = ""):
        super().__init__(f"{directory} lacks {', '.join(missing)}." + (f" {advice}" if advice else ""))
        self.directory = directory
        self.missing = missing


def issuer_files(slug: str) -> tuple[str, ...]:
    return tuple(name.format(slug=slug) for name in ISSUER_FILES)


def load_issuers(directory: Path) -> dict[CertificateKind, Issuer]:
    """Both issuers from `directory`; `IssuerFilesMissing` names every absent file at once."""
    directory = Path(directory)
    missing = [name for slug in CRL_ISSUER_SLUG.values() for name in issuer_files(slug)
               if not (directory / name).is_file()]
    if missing:
        raise IssuerFilesMissing(directory, missing)
    issuers = {}
    for kind, slug in CRL_ISSUER_SLUG.items():
        issuers[kind] = Issuer(
            kind,
            _read_key(directory / CA_KEY.format(slug=slug)),
            x509.load_pem_x509_certificate((directory / CA_CERTIFICATE.format(slug=slug)).read_bytes()),
            _read_key(directory / RESPONDER_KEY.format(slug=slug)),
            x509.load_pem_x509_certificate((directory / RESPONDER_CERTIFICATE.format(slug=slug)).read_bytes()),
        )
    return issuers


def save_issuers(directory: Path, issuers) -> None:
    """Write each issuer's four files into `directory` (made 0700 if new), each one whole or not at all."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for issuer in issuers:
        slug = CRL_ISSUER_SLUG[issuer.kind]
        write_file(directory / CA_KEY.format(slug=slug), key_pem(issuer.key), private=True)
        write_file(directory / CA_CERTIFICATE.format(slug=slug), certificate_pem(issuer.certificate))
        write_file(directory / RESPONDER_KEY.format(slug=slug), key_pem(issuer.responder_key), private=True)
        write_file(directory / RESPONDER_CERTIFICATE.format(slug=slug),
                   certificate_pem(issuer.responder_certificate))


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    """Write whole-or-nothing: a crash never leaves half a key behind. `private` files are 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)
