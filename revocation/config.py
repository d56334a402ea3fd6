"""The revocation service's configuration, read from the environment in this one place.

| variable | meaning | default |
|---|---|---|
| REDIS_URL | Redis server (`redis://`) or cluster (with REDIS_CLUSTER=1) | redis://127.0.0.1:6390/0 |
| REDIS_CLUSTER | 1 when REDIS_URL points at a Redis Cluster node | 0 |
| MYKEY_VAR | state directory; the dev CA lives in `$MYKEY_VAR/pki` | var |
| REVOCATION_URL | public base URL of this service (in certificates and CRLs) | http://127.0.0.1:8081 |
| REVOCATION_ISSUERS | `dev` (the dev CA) or a directory of production issuer PEMs | dev |
| MOVED_ABROAD_REVOKES_AUTH | 1 to revoke auth certificates on a move abroad (pre-2024 rule) | 0 |
| OCSP_VALIDITY_SECONDS | nextUpdate − thisUpdate of OCSP responses | 14400 |
| OCSP_NONCE_CONCURRENCY | live (nonce) signatures at once per process | 8 |
| CRL_VALIDITY_SECONDS | nextUpdate − thisUpdate of CRLs | 86400 |
| CRL_MIN_INTERVAL_MS | a shard is republished at most this often | 50 |
| STATUS_BUCKETS / HOLDER_BUCKETS | fixed for a deployment's life: changing them moves keys | 1048576 |
| CONSOLE_INSECURE_DEV_COOKIES | 1: the operator console's cookie over plain http on 127.0.0.1 (development) | 0 |
| CONSOLE_PEER_URL | the IdP's console page (RP clients), linked from this console's menu | none |
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jpki.devca import DEFAULT_REVOCATION_URL, DevCA, Issuer
from jpki.profile import CRL_ISSUER_SLUG, CRL_SHARD_COUNT, CertificateKind


@dataclass(frozen=True)
class RevocationConfig:
    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_cluster: bool = False
    var_dir: Path = Path("var")
    base_url: str = DEFAULT_REVOCATION_URL
    issuers_source: str = "dev"
    moved_abroad_revokes_auth: bool = False
    ocsp_validity: dt.timedelta = dt.timedelta(hours=4)
    ocsp_nonce_concurrency: int = 8
    crl_validity: dt.timedelta = dt.timedelta(days=1)
    crl_min_interval: dt.timedelta = dt.timedelta(milliseconds=50)
    crl_shards: int = CRL_SHARD_COUNT
    status_buckets: int = 1 << 20
    holder_buckets: int = 1 << 20
    max_body_bytes: int = 1 << 20
    console_insecure_dev_cookies: bool = False
    console_peer_url: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.console_insecure_dev_cookies and urlsplit(self.base_url).hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("CONSOLE_INSECURE_DEV_COOKIES is only allowed for a service on 127.0.0.1")

    @classmethod
    def from_env(cls, env: dict | None = None) -> RevocationConfig:
        env = os.environ if env is None else env
        return cls(
            redis_url=env.get("REDIS_URL", cls.redis_url),
            redis_cluster=env.get("REDIS_CLUSTER", "0") == "1",
            var_dir=Path(env.get("MYKEY_VAR", "var")),
            base_url=env.get("REVOCATION_URL", DEFAULT_REVOCATION_URL).rstrip("/"),
            issuers_source=env.get("REVOCATION_ISSUERS", "dev"),
            moved_abroad_revokes_auth=env.get("MOVED_ABROAD_REVOKES_AUTH", "0") == "1",
            ocsp_validity=dt.timedelta(seconds=int(env.get("OCSP_VALIDITY_SECONDS", "14400"))),
            ocsp_nonce_concurrency=int(env.get("OCSP_NONCE_CONCURRENCY", "8")),
            crl_validity=dt.timedelta(seconds=int(env.get("CRL_VALIDITY_SECONDS", "86400"))),
            crl_min_interval=dt.timedelta(milliseconds=int(env.get("CRL_MIN_INTERVAL_MS", "50"))),
            status_buckets=int(env.get("STATUS_BUCKETS", str(1 << 20))),
            holder_buckets=int(env.get("HOLDER_BUCKETS", str(1 << 20))),
            console_insecure_dev_cookies=env.get("CONSOLE_INSECURE_DEV_COOKIES", "0") == "1",
            console_peer_url=env.get("CONSOLE_PEER_URL") or None,
        )

    @property
    def pki_dir(self) -> Path:
        return self.var_dir / "pki"


def load_issuers(config: RevocationConfig) -> dict[str, Issuer]:
    """Issuer slug ("auth", "sign") → the CA certificate, its key for CRLs, and its OCSP responder.

    `dev`: the development CA under var/pki (created on first use). Otherwise a directory holding, per slug,
    `<slug>-ca.pem`, `<slug>-crl-signer.key.pem` and `<slug>-ocsp.pem` + `<slug>-ocsp.key.pem` — the platform's
    delegated responder and CRL signing material for that issuer.
    """
    if config.issuers_source == "dev":
        ca = DevCA.load_or_create(config.pki_dir, config.base_url)
        return {CRL_ISSUER_SLUG[kind]: ca.issuer(kind) for kind in CertificateKind}
    directory = Path(config.issuers_source)
    issuers = {}
    for kind, slug in CRL_ISSUER_SLUG.items():
        issuers[slug] = Issuer(
            kind,
            _key(directory / f"{slug}-crl-signer.key.pem"),
            x509.load_pem_x509_certificate((directory / f"{slug}-ca.pem").read_bytes()),
            _key(directory / f"{slug}-ocsp.key.pem"),
            x509.load_pem_x509_certificate((directory / f"{slug}-ocsp.pem").read_bytes()),
        )
    return issuers


def _key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)
