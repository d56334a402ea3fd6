"""Wiring: one place that builds the IdP's parts from its configuration, and the one way to reach them.

`build_services` assembles the parts; what the IdP asks of the certificate status store comes in from outside, as
a `CertificateRecords` (idp/certificate_records.py), so the IdP never imports the revocation service: the
composition root (deploy/composition.py) passes its adapter in. Views reach the parts of the running app with
`current()`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from flask import current_app

from idp.certificate_records import CertificateRecords
from idp.config import ConfigurationError, IdpConfig
from idp.holder.sealing import Sealer
from idp.holder.sessions import SessionStore
from idp.login.revocation_check import RevocationChecker
from idp.login.transactions import LoginStore
from idp.login.trust import TrustStore
from idp.login.verification import CertificateVerifier
from idp.oidc.clients import ClientRegistry
from idp.oidc.signing_keys import SigningKeys
from idp.oidc.tokens import TokenStore
from mykey.consent import ConsentStore
from mykey.directory import MyKeyDirectory
from mykey.record import AccessRecord
from observability.metrics import Counter
from wire.redis_connect import connect_redis

CERTIFICATE_CONTEXT = "certificate-ref"
EXTENSION = "idp"  # the app's extensions[...] entry that holds the IdpServices


@dataclass
class IdpServices:
    config: IdpConfig
    redis: redis.Redis
    certificates: CertificateRecords
    clients: ClientRegistry
    tokens: TokenStore
    signing_keys: SigningKeys
    logins: LoginStore
    sessions: SessionStore | None  # built after the services: it calls certificate_good
    verifier: CertificateVerifier
    mykey: MyKeyDirectory
    consents: ConsentStore
    access_record: AccessRecord  # sealed to the holder's card (mykey/record.py)
    sealer: Sealer
    logins_total: Counter
    record_entries: Counter | None = None  # access-record entries written, by what they are sealed to: counts only
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def seal_certificate(self, issuer: str, serial: int, token_type: str) -> str:
        """The reference sessions, codes and tokens keep instead of a serial in clear. It also names the token the
        certificate was used from ("card" or "smartphone"), so that travels to the ID token's `amr` and the access
        record with it."""
        return self.sealer.seal({"issuer": issuer, "serial": serial, "token_type": token_type}, CERTIFICATE_CONTEXT)

    def token_type_of(self, certificate: str) -> str:
        """The token type a certificate reference names; a reference sealed before it carried one was a card's."""
        return self.sealer.open(certificate, CERTIFICATE_CONTEXT).get("token_type", "card")

    def certificate_digest(self, certificate: str) -> str:
        """The keyed hash (the MyKey directory's) of the certificate behind a sealed reference: what the access record
        compares to tell whether the holder's key belongs to the card in use."""
        ref = self.sealer.open(certificate, CERTIFICATE_CONTEXT)
        return self.mykey.certificate_digest(ref["issuer"], ref["serial"])

    def certificate_good(self, certificate: str) -> bool:
        """Is the certificate behind a sealed reference still good (not revoked, held or expired)?"""
        ref = self.sealer.open(certificate, CERTIFICATE_CONTEXT)
        record = self.certificates.find(ref["issuer"], ref["serial"])
        return record is not None and record.good_at(self.clock())


def current() -> IdpServices:
    """The services of the app handling the current request (`create_app` installs them)."""
    return current_app.extensions[EXTENSION]


def build_services(config: IdpConfig, client: redis.Redis | None = None, *, certificates: CertificateRecords,
                   trust: TrustStore | None = None, clock: Callable[[], dt.datetime] | None = None) -> IdpServices:
    """The IdP's parts on `client` (else a connection to REDIS_URL); `certificates` answers for the status store."""
    client = client or connect_redis(config.redis_url, config.redis_cluster)
    clock = clock or (lambda: dt.datetime.now(dt.UTC))
    if trust is None:
        trust = load_trust(config)
    checker = RevocationChecker(ocsp_url=f"{config.revocation_url}/ocsp", crl_base_url=config.revocation_url,
                                trust=trust)
    keys = SigningKeys(client, config)
    keys.ensure()
    record_entries = Counter(client, "mykey_access_record_entries_total",
                             "Access-record entries written, by what they are sealed to (holder's card, or pending)",
                             ("sealed_to",))
    services = IdpServices(
        config=config,
        redis=client,
        certificates=certificates,
        clients=ClientRegistry(client, fetch_ca_file=config.fetch_ca_file),
        tokens=TokenStore(client, config.code_ttl, config.refresh_token_ttl),
        signing_keys=keys,
        logins=LoginStore(client, config.login_ttl, clock),
        sessions=None,  # set below: it asks the services whether a certificate is still good
        verifier=CertificateVerifier(trust, checker, clock=clock),
        mykey=MyKeyDirectory(client, config.subkey("mykey-serial"), certificates),
        consents=ConsentStore(client, config.subkey("consent-lookup")),
        access_record=AccessRecord(client, config.subkey("access-record-pending"),
                                   counted=lambda sealed_to: record_entries.inc(sealed_to=sealed_to)),
        sealer=Sealer(config.subkey("sealed-facts")),
        logins_total=Counter(client, "mykey_logins_total", "Card logins answered, by result code and token type",
                             ("result", "token_type")),
        record_entries=record_entries,
        clock=clock,
    )
    services.sessions = SessionStore(client, config.session_ttl, services.certificate_good)
    return services


def load_trust(config: IdpConfig) -> TrustStore:
    """The pinned roots: the development CA's only in development, else the files in IDP_TRUST_DIR."""
    if config.trust == "dev":
        if not config.development:
            raise ConfigurationError("The development CA's roots (IDP_TRUST=dev) are trusted only in development.")
        from jpki.devca import DevCA

        dev_ca = DevCA.load_or_create(config.pki_dir, config.revocation_url)
        return TrustStore.development((dev_ca.auth, dev_ca.signing))
    if config.trust_dir is None:
        raise ConfigurationError("IDP_TRUST=production needs IDP_TRUST_DIR, the directory of pinned root PEMs.")
    return TrustStore.from_directory(config.trust_dir, config.trust_pins)
