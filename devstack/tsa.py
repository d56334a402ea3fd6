"""A development RFC 3161 time-stamping authority: what the demo relying party asks for a signature time-stamp.

A PAdES baseline B-T signature carries a time-stamp token over its signature value, from a time-stamping
authority (TSA) the verifier trusts; B-LT adds the TSA's chain and revocation information to the document. The
platform does not run a TSA and never will — a time-stamp is the relying party's business, from an accredited TSA
(in Japan, one accredited under the time-stamp accreditation scheme), named by the demo RP's `DEMO_RP_TSA_URL`.
For development and tests this module stands in for one:

- its own small PKI, not the JPKI dev CA's: a TSA root and one TSA certificate (extended key usage
  id-kp-timeStamping, critical, as RFC 3161 §2.3 requires) whose CRL distribution point is this server. A JPKI
  root issues card certificates only, so a verifier that trusts it must not thereby trust a time-stamp;
- `POST /tsa` — RFC 3161 over HTTP (§3.4: application/timestamp-query in, application/timestamp-reply out). The
  token is made by pyHanko's DummyTimeStamper, which answers every well-formed request with the current time;
- `GET /tsa-root.crl` — the TSA root's CRL (empty), which the relying party embeds as the TSA certificate's
  revocation information; `GET /tsa-root.pem` — the root, for a verifier to trust.

Requests are bounded (`MAX_REQUEST`) and anything that is not a TimeStampReq gets 400.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from asn1crypto import keys, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask import Flask, Response, request
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

MAX_REQUEST = 4096  # bytes: a TimeStampReq is ~60
LIFETIME = dt.timedelta(days=365)
CRL_LIFETIME = dt.timedelta(days=7)
CRL_PATH = "/tsa-root.crl"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MyKey development (not a real TSA)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _to_asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True)
class DevTSA:
    root: x509.Certificate
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    crl: bytes  # DER, signed by the root

    @classmethod
    def generate(cls, url: str, now: dt.datetime | None = None) -> DevTSA:
        """A TSA served at `url` (its CRL distribution point names `url` + CRL_PATH)."""
        now = now or dt.datetime.now(dt.UTC)
        root_key, key = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
        root_name = _name("MyKey Dev TSA Root")
        root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
                .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
                .sign(root_key, hashes.SHA256()))
        certificate = (
            x509.CertificateBuilder().subject_name(_name("MyKey Dev TSA")).issuer_name(root_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(url.rstrip("/") + CRL_PATH)], None, None, None)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
        crl = (x509.CertificateRevocationListBuilder().issuer_name(root_name)
               .last_update(now - dt.timedelta(minutes=5)).next_update(now + CRL_LIFETIME)
               .add_extension(x509.CRLNumber(1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                              critical=False)
               .sign(root_key, hashes.SHA256()))
        return cls(root, certificate, key, crl.public_bytes(serialization.Encoding.DER))

    def stamper(self) -> DummyTimeStamper:
        key_der = self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        return DummyTimeStamper(tsa_cert=_to_asn1(self.certificate), tsa_key=keys.PrivateKeyInfo.load(key_der))


def create_app(tsa: DevTSA) -> Flask:
    app = Flask(__name__)
    stamper = tsa.stamper()

    @app.post("/tsa")
    def stamp():
        body = request.get_data(cache=False)[: MAX_REQUEST + 1]
        if request.mimetype != "application/timestamp-query" or not 0 < len(body) <= MAX_REQUEST:
            return Response("Send one RFC 3161 TimeStampReq as application/timestamp-query.\n", 400,
                            mimetype="text/plain")
        try:
            query = tsp.TimeStampReq.load(body, strict=True)
            _ = query.native  # every field parsed now
        except (ValueError, TypeError, KeyError):
            return Response("The body is not a DER-encoded TimeStampReq.\n", 400, mimetype="text/plain")
        reply = asyncio.run(stamper.async_request_tsa_response(query))
        return Response(reply.dump(), 200, mimetype="application/timestamp-reply")

    @app.get(CRL_PATH)
    def crl():
        return Response(tsa.crl, 200, mimetype="application/pkix-crl")

    @app.get("/tsa-root.pem")
    def root():  # what a verifier adds as the time-stamp trust anchor, for files signed with this TSA
        return Response(tsa.root.public_bytes(serialization.Encoding.PEM), 200, mimetype="application/x-pem-file")

    return app
