"""The composition root: the one module that imports both services, and the way each is started.

    gunicorn -c deploy/gunicorn-idp.conf.py -b 127.0.0.1:8080 'deploy.composition:idp_app()'
    gunicorn -c deploy/gunicorn-revocation.conf.py -b 127.0.0.1:8081 'deploy.composition:revocation_app()'
    deploy/granian-ocsp.sh --host 127.0.0.1 --port 8083      # the OCSP data plane: ocsp_app under granian
    MYKEY_DEV=1 python -m deploy serve idp|revocation [--host 127.0.0.1] [--port N]    # development

The IdP and the revocation service never import each other. What the IdP needs of the revocation service's status
store is the narrow, read-only `CertificateRecords` protocol it owns (idp/certificate_records.py); the one adapter
that answers it from the `StatusStore` is here, `StatusStoreRecords`. Each app reads its configuration from the
environment (docs/configuration.md) and refuses to start outside development without its production settings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import redis
from flask import Flask

from idp.app import create_app as create_idp_app
from idp.certificate_records import CertificateRecord, Standing
from idp.config import IdpConfig
from idp.login.trust import TrustStore
from idp.services import IdpServices
from idp.services import build_services as build_idp_services
from revocation.app import create_app as create_revocation_app
from revocation.app import create_ocsp_app
from revocation.config import RevocationConfig
from revocation.services import build_services as build_revocation_services
from revocation.storage.keys import LAYOUT, serial_field
from revocation.storage.store import CertificateStatus, StatusRecord, StatusStore, StorageLayoutError
from wire.redis_connect import connect_redis

_STANDING = {CertificateStatus.GOOD: Standing.GOOD, CertificateStatus.REVOKED: Standing.REVOKED,
             CertificateStatus.ON_HOLD: Standing.ON_HOLD}


class StatusStoreRecords:
    """The IdP's `CertificateRecords`, answered from the revocation service's status store (reads only).

    Given a client rather than a store, it reads the storage layout the revocation service recorded in Redis
    (`StatusStore.from_layout`) at first use, so the IdP carries no bucket counts of its own and may start before
    any revocation process has: until one has, no certificate is known, which is the truth.
    """

    def __init__(self, store: StatusStore | None = None, *, client: redis.Redis | None = None):
        if (store is None) == (client is None):
            raise TypeError("StatusStoreRecords reads either a given store or the layout recorded through a client")
        self._store, self._client = store, client

    def _status_store(self) -> StatusStore | None:
        if self._store is None:
            try:
                self._store = StatusStore.from_layout(self._client)
            except StorageLayoutError as error:
                if error.code != "storage_layout_unknown":
                    raise
                return None  # no revocation process has started on this Redis yet
        return self._store

    def find(self, issuer: str, serial: int) -> CertificateRecord | None:
        store = self._status_store()
        return self._answer(store.get(issuer, serial) if store is not None else None)

    def find_queued(self, pipeline: redis.client.Pipeline, issuer: str, serial: int,
                    ) -> Callable[[object], CertificateRecord | None]:
        """The same read as `StatusStore.get` (one HGET in the record's bucket), queued on the login's pipeline.
        Before any revocation process recorded a layout, one EXISTS of the layout record is queued instead: nothing is
        known yet, and the next question looks again."""
        store = self._status_store()
        if store is None:
            pipeline.exists(LAYOUT)
            return lambda reply: None
        pipeline.hget(store.keys.status(issuer, serial), serial_field(serial))
        return lambda reply: self._answer(StatusRecord.unpack(reply) if reply else None)

    def previous(self, issuer: str, serial: int) -> int | None:
        store = self._status_store()
        return store.links(issuer, serial)[0] if store is not None else None

    @staticmethod
    def _answer(record: StatusRecord | None) -> CertificateRecord | None:
        return None if record is None else CertificateRecord(_STANDING[record.status], record.not_after,
                                                             record.auth_serial)


def idp_services(config: IdpConfig, client: redis.Redis | None = None, *, trust: TrustStore | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> IdpServices:
    """The IdP's services on `client` (else REDIS_URL), reading certificates from the status store there."""
    client = client or connect_redis(config.redis_url, config.redis_cluster)
    return build_idp_services(config, client, certificates=StatusStoreRecords(client=client), trust=trust,
                              clock=clock)


def idp_app(config: IdpConfig | None = None) -> Flask:
    """The IdP's WSGI app, configured from the environment: what gunicorn starts."""
    config = config or IdpConfig.from_env()
    return create_idp_app(config, idp_services(config))


def ocsp_app(config: RevocationConfig | None = None) -> Callable[[dict, Callable], object]:
    """The OCSP responder alone (POST /ocsp, GET /ocsp/<request>, /healthz), a bare WSGI callable with no Flask:
    the production data plane, what deploy/granian-ocsp.sh starts. The same responder as the revocation app's
    /ocsp, configured the same way, refusing to start outside development without production settings."""
    config = config or RevocationConfig.from_env()
    return create_ocsp_app(config, build_revocation_services(config))


def revocation_app(config: RevocationConfig | None = None) -> Flask:
    """The revocation service's WSGI app, configured from the environment: what gunicorn starts."""
    config = config or RevocationConfig.from_env()
    return create_revocation_app(config, build_revocation_services(config))
