"""Shared fixtures: a real redis-server, the dev CA, and virtual cards issued by it."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
import redis

from devstack.http import LiveServer
from devstack.redis_server import RedisServer
from jpki.devca import DevCA
from nfc_bridge.card_file import Holder, new_card_state, write_card_file
from tests.log_registry import LOG_LINES, LogCollector, register_sensitive

AUTH_PIN = "1234"
SIGN_PIN = "ABC123"

@pytest.fixture(scope="session", autouse=True)
def development_flag():
    """The suite runs the platform in development, as `make run` does (MYKEY_DEV=1, docs/configuration.md); every
    child process inherits it. The production-shape tests start their processes with MYKEY_DEV=0."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MYKEY_DEV", "1")
        yield


@pytest.fixture(scope="session", autouse=True)
def collect_every_log_line():
    """Everything the platform logs during the suite, at DEBUG, for the log privacy check."""
    root = logging.getLogger()
    handler = LogCollector(LOG_LINES)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    """One real redis-server per test session, on a free loopback port."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory) -> DevCA:
    return DevCA.load_or_create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_card(dev_ca, tmp_path):
    """Factory: a fresh virtual card file (auth PIN 1234, signing PIN ABC123 unless given)."""
    counter = 0

    def make(holder: Holder | None = None, smartphone: bool = False, pin: str = AUTH_PIN,
             sign_pin: str = SIGN_PIN, issued_at: dt.datetime | None = None) -> Path:
        nonlocal counter
        counter += 1
        path = tmp_path / f"card-{counter}.json"
        state = new_card_state(dev_ca, pin, sign_pin, holder or Holder(), smartphone, issued_at)
        write_card_file(path, state)
        from jpki import parse_certificate

        for fid in ("000A", "0001"):
            if fid in state["files"]:
                register_sensitive(parse_certificate(bytes.fromhex(state["files"][fid])).serial)
        return path

    return make


@pytest.fixture
def card_file(make_card) -> Path:
    return make_card()


@pytest.fixture
def revocation_config(redis_server, tmp_path, dev_ca):
    """Config for a revocation service on the test Redis, with the session's dev CA, and small buckets."""
    from revocation.config import RevocationConfig

    var = tmp_path / "var"
    dev_ca.save(var / "pki")
    return RevocationConfig(redis_url=redis_server.url, var_dir=var, base_url=dev_ca.revocation_url,
                            status_buckets=1024, holder_buckets=1024)


@pytest.fixture
def revocation_services(revocation_config, redis_client):
    from revocation.services import build_services

    return build_services(revocation_config, redis_client)


@pytest.fixture
def revocation_service(revocation_config, revocation_services):
    """The revocation app over real HTTP. `.url`, `.services`."""
    from revocation.app import create_app

    with LiveServer(create_app(revocation_config, revocation_services)) as live:
        live.services = revocation_services
        yield live


@pytest.fixture
def issue_card(dev_ca, revocation_services):
    """Factory: issue an auth + signing certificate with the dev CA and register them through a
    `certificate_issued` event. Returns a dict: holder, card_id, auth and signing (x509.Certificate)."""
    import secrets

    from jpki.certificate import FourFacts
    from jpki.devca import new_rsa_key
    from jpki.profile import CertificateKind
    from revocation.domain.events import CertificateRef, certificate_issued

    def issue(holder: str | None = None, card_id: str | None = None, occurred_at: str = "2026-01-01T00:00:00Z"):
        # A letter in the middle: twelve digits in a row would be refused as a My Number-like value.
        holder = holder or f"holder-{secrets.token_hex(3)}x{secrets.token_hex(3)}"
        card_id = card_id or f"card-{secrets.token_hex(3)}x{secrets.token_hex(3)}"
        facts = FourFacts(name="試験 太郎", address="東京都", birthdate=dt.date(1990, 1, 2), sex="1")
        auth = dev_ca.issue_auth(new_rsa_key().public_key(), facts.birthdate)
        signing = dev_ca.issue_signing(new_rsa_key().public_key(), facts)
        event = certificate_issued(
            f"issue-{secrets.token_hex(4)}x{secrets.token_hex(4)}", holder, card_id,
            [CertificateRef(kind, c.serial_number, c.not_valid_after_utc)
             for kind, c in ((CertificateKind.AUTH, auth), (CertificateKind.SIGNING, signing))],
            occurred_at=dt.datetime.fromisoformat(occurred_at), source="test")
        revocation_services.applier.apply(event)
        register_sensitive(auth.serial_number, signing.serial_number)
        return {"holder": holder, "card_id": card_id, "auth": auth, "signing": signing}

    return issue


@pytest.fixture
def idp_service(revocation_service, revocation_config, redis_client):
    """The IdP over real HTTP, next to the live revocation service, with plain-http dev cookies on 127.0.0.1.
    `.url`, `.services`, `.register_card(path)` (records a virtual card's certificates as issued)."""
    import secrets

    from deploy.composition import StatusStoreRecords
    from devstack.processes import free_port
    from idp.app import create_app
    from idp.config import IdpConfig
    from idp.services import build_services

    port = free_port()
    config = IdpConfig(issuer=f"http://127.0.0.1:{port}", redis_url=revocation_config.redis_url,
                       var_dir=revocation_config.var_dir, revocation_url=revocation_service.url,
                       insecure_dev_cookies=True, secret=secrets.token_bytes(32))
    # The IdP reads certificates through the composition root's adapter, from the live service's own store.
    services = build_services(config, redis_client,
                              certificates=StatusStoreRecords(revocation_service.services.store))
    create_login = services.logins.create

    def create_and_remember(*args, **kwargs):
        txn = create_login(*args, **kwargs)
        register_sensitive(txn.challenge, txn.signing_challenge, txn.handle, txn.id)
        return txn

    services.logins.create = create_and_remember
    with LiveServer(create_app(config, services), port=port) as live:
        live.services = services
        live.revocation = revocation_service
        live.register_card = lambda path, holder=None: register_virtual_card(revocation_service.services, path, holder)
        yield live


def register_virtual_card(revocation_services, card_path, holder: str | None = None,
                          occurred_at: str = "2026-01-01T00:00:00Z") -> dict:
    """Record a virtual card's certificates as issued, through a `certificate_issued` event."""
    import secrets

    from jpki import parse_certificate
    from jpki.profile import CertificateKind
    from nfc_bridge.virtual_card import VirtualCard
    from revocation.domain.events import CertificateRef, certificate_issued

    card = VirtualCard.load(card_path)
    certificates = []
    for kind in CertificateKind:
        der = card.certificate(kind)
        if der:
            cert = parse_certificate(der)
            certificates.append(CertificateRef(kind, cert.serial, cert.not_after))
    holder = holder or f"holder-{secrets.token_hex(3)}x{secrets.token_hex(3)}"
    card_id = f"card-{secrets.token_hex(3)}x{secrets.token_hex(3)}"
    revocation_services.applier.apply(certificate_issued(
        f"issue-{secrets.token_hex(4)}x{secrets.token_hex(4)}", holder, card_id, certificates,
        occurred_at=dt.datetime.fromisoformat(occurred_at), source="test"))
    return {"holder": holder, "card_id": card_id}
