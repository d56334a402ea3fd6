"""Wiring: one place that builds the IdP's parts from its configuration."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.cluster import RedisCluster

from idp.config import ConfigurationError, IdpConfig
from idp.holder.sealing import Sealer
from idp.holder.sessions import SessionStore, certificate_still_good
from idp.login.revocation_check import RevocationChecker
from idp.login.transactions import LoginStore
from idp.login.trust import TrustStore
from idp.login.verification import CertificateVerifier
from idp.oidc.clients import ClientRegistry
from idp.oidc.signing_keys import SigningKeys
from idp.oidc.tokens import TokenStore
from mykey.consent import AccessLog, ConsentStore
from mykey.directory import MyKeyDirectory
from observability.metrics import Counter
from revocation.storage.keys import KeySpace
from revocation.storage.store import StatusStore

CERTIFICATE_CONTEXT = "certificate-ref"


class RenewalLinks:
    """What `mykey` needs of the revocation service's 新旧紐付け: the certificate a renewal replaced."""

    def __init__(self, store: StatusStore):
        self.store = store

    def previous(self, issuer: str, serial: int) -> int | None:
        return self.store.links(issuer, serial)[0]


@dataclass
class IdpServices:
    config: IdpConfig
    redis: redis.Redis
    status: StatusStore
    clients: ClientRegistry
    tokens: TokenStore
    signing_keys: SigningKeys
    logins: LoginStore
    sessions: SessionStore | None  # built after the services: it calls certificate_good
    verifier: CertificateVerifier
    mykey: MyKeyDirectory
    consents: ConsentStore
    access_log: AccessLog
    sealer: Sealer
    logins_total: Counter
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def seal_certificate(self, issuer: str, serial: int, token_type: str) -> str:
        """The reference sessions, codes and tokens keep instead of a serial in clear. It also names the token the
        certificate was used from ("card" or "smartphone"), so that travels to the ID token's `amr` and the access
        record with it."""
        return self.sealer.seal({"issuer": issuer, "serial": serial, "token_type": token_type}, CERTIFICATE_CONTEXT)

    def token_type_of(self, certificate: str) -> str:
        """The token type a certificate reference names; a reference sealed before it carried one was a card's."""
        return self.sealer.open(certificate, CERTIFICATE_CONTEXT).get("token_type", "card")

    def certificate_good(self, certificate: str) -> bool:
        """Is the certificate behind a sealed reference still good (not revoked, held or expired)?"""
        ref = self.sealer.open(certificate, CERTIFICATE_CONTEXT)
        return certificate_still_good(self.status, ref["issuer"], ref["serial"], self.clock())


def connect_redis(config: IdpConfig) -> redis.Redis:
    # A Redis address that never answers is an error within seconds, not after the system's connect timeout.
    if config.redis_cluster:
        return RedisCluster.from_url(config.redis_url, socket_connect_timeout=5)
    return redis.Redis.from_url(config.redis_url, socket_connect_timeout=5)


def build_services(config: IdpConfig, client: redis.Redis | None = None, trust: TrustStore | None = None,
                   clock: Callable[[], dt.datetime] | None = None) -> IdpServices:
    client = client or connect_redis(config)
    clock = clock or (lambda: dt.datetime.now(dt.UTC))
    status = StatusStore(client, KeySpace(config.status_buckets, config.holder_buckets))
    if trust is None:
        trust = load_trust(config)
    checker = RevocationChecker(ocsp_url=f"{config.revocation_url}/ocsp", crl_base_url=config.revocation_url,
                                trust=trust)
    keys = SigningKeys(client, config)
    keys.ensure()
    services = IdpServices(
        config=config,
        redis=client,
        status=status,
        clients=ClientRegistry(client, fetch_ca_file=config.fetch_ca_file),
        tokens=TokenStore(client, config.code_ttl, config.refresh_token_ttl),
        signing_keys=keys,
        logins=LoginStore(client, config.login_ttl, clock),
        sessions=None,  # set below: it asks the services whether a certificate is still good
        verifier=CertificateVerifier(trust, checker, clock=clock),
        mykey=MyKeyDirectory(client, config.subkey("mykey-serial"), RenewalLinks(status)),
        consents=ConsentStore(client),
        access_log=AccessLog(client),
        sealer=Sealer(config.subkey("sealed-facts")),
        logins_total=Counter(client, "mykey_logins_total", "Card logins answered, by result code and token type",
                             ("result", "token_type")),
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

        return TrustStore.development(DevCA.load_or_create(config.pki_dir, config.revocation_url))
    if config.trust_dir is None:
        raise ConfigurationError("IDP_TRUST=production needs IDP_TRUST_DIR, the directory of pinned root PEMs.")
    return TrustStore.from_directory(config.trust_dir, config.trust_pins)
