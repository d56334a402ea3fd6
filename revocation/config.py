"""The revocation service's configuration, read from the environment in this one place.

docs/configuration.md is the reference for every variable (and for the worker, which reads the same ones):

| variable | meaning | default |
|---|---|---|
| MYKEY_DEV | 1 marks development: the dev CA and a loopback REVOCATION_URL are allowed | unset |
| REDIS_URL | Redis server (`redis://`) or cluster (with REDIS_CLUSTER=1) | redis://127.0.0.1:6390/0 |
| REDIS_CLUSTER | 1 when REDIS_URL points at a Redis Cluster node | 0 |
| MYKEY_VAR | state directory; the dev CA lives in `$MYKEY_VAR/pki` | var |
| REVOCATION_URL | public base URL of this service (in certificates and CRLs) | http://127.0.0.1:8081 (development) |
| REVOCATION_ISSUERS | `dev` (the dev CA, development only) or the directory of issuer files | dev (development) |
| MOVED_ABROAD_REVOKES_AUTH | 1 to revoke auth certificates on a move abroad (pre-2024 rule) | 0 |
| OCSP_VALIDITY_SECONDS | nextUpdate − thisUpdate of OCSP responses | 14400 |
| OCSP_NONCE_CONCURRENCY | live (nonce) signatures at once per process | 8 |
| OCSP_HTTP_MAX_AGE_SECONDS | cap on the max-age HTTP caches get for nonce-less answers | until nextUpdate |
| CRL_VALIDITY_SECONDS | nextUpdate − thisUpdate of CRLs | 86400 |
| CRL_MIN_INTERVAL_MS | a shard is republished at most this often | 50 |
| STATUS_BUCKETS / HOLDER_BUCKETS | fixed for a deployment's life: recorded in Redis, other counts refused | 1048576 |
| EVENT_BATCH | stream entries a worker reads and applies at once (1–10000) | 500 |
| CONSOLE_INSECURE_DEV_COOKIES | 1: the operator console's cookie over plain http on 127.0.0.1 (development only) | 0 |
| CONSOLE_PEER_URL | the IdP's console page (RP clients), linked from this console's menu | none |
| CONSOLE_LAG_AMBER | the console's state turns amber when this many events wait to be delivered | 1000 |
| CONSOLE_CRL_AMBER_SECONDS | … or when a CRL shard's nextUpdate is this close | 14400 |

Outside development — no `MYKEY_DEV=1`, or an https REVOCATION_URL — `from_env` refuses to build a configuration
without REVOCATION_URL and a REVOCATION_ISSUERS directory, or with CONSOLE_INSECURE_DEV_COOKIES, naming each
(`ConfigurationError`): a production service never signs with a development CA it made up on first start.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from jpki.issuer import DEFAULT_REVOCATION_URL, Issuer, IssuerFilesMissing
from jpki.issuer import load_issuers as load_issuer_files
from jpki.profile import CRL_ISSUER_SLUG, CRL_SHARD_COUNT, CertificateKind
from wire.errors import FixedCodeError

DEV_FLAG = "MYKEY_DEV"  # `make run` (devstack) and the test suite set it; production never does


class ConfigurationError(FixedCodeError, ValueError):
    """The environment does not describe a service that may start; the message names what to set or unset."""

    code = "configuration_refused"


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
    ocsp_http_max_age: int | None = None  # seconds; None: until the response's nextUpdate (RFC 5019 §6.2)
    crl_validity: dt.timedelta = dt.timedelta(days=1)
    crl_min_interval: dt.timedelta = dt.timedelta(milliseconds=50)
    crl_shards: int = CRL_SHARD_COUNT
    status_buckets: int = 1 << 20
    holder_buckets: int = 1 << 20
    event_batch: int = 500
    max_body_bytes: int = 1 << 20
    console_insecure_dev_cookies: bool = False
    console_peer_url: str | None = None
    console_lag_amber: int = 1000
    console_crl_amber: dt.timedelta = dt.timedelta(hours=4)
    development: bool = True  # False: built by from_env for production; the dev CA is then refused
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.event_batch <= 10_000:
            raise ValueError("EVENT_BATCH must be between 1 and 10000")
        if self.console_insecure_dev_cookies and urlsplit(self.base_url).hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("CONSOLE_INSECURE_DEV_COOKIES is only allowed for a service on 127.0.0.1")

    @classmethod
    def from_env(cls, env: dict | None = None) -> RevocationConfig:
        env = os.environ if env is None else env
        base_url = env.get("REVOCATION_URL", DEFAULT_REVOCATION_URL).rstrip("/")
        development = env.get(DEV_FLAG) == "1" and urlsplit(base_url).scheme != "https"
        if not development:
            refuse_unless_production_ready(env)
        return cls(
            redis_url=env.get("REDIS_URL", cls.redis_url),
            redis_cluster=env.get("REDIS_CLUSTER", "0") == "1",
            var_dir=Path(env.get("MYKEY_VAR", "var")),
            base_url=base_url,
            development=development,
            issuers_source=env.get("REVOCATION_ISSUERS", "dev"),
            moved_abroad_revokes_auth=env.get("MOVED_ABROAD_REVOKES_AUTH", "0") == "1",
            ocsp_validity=dt.timedelta(seconds=int(env.get("OCSP_VALIDITY_SECONDS", "14400"))),
            ocsp_nonce_concurrency=int(env.get("OCSP_NONCE_CONCURRENCY", "8")),
            ocsp_http_max_age=int(env["OCSP_HTTP_MAX_AGE_SECONDS"]) if env.get("OCSP_HTTP_MAX_AGE_SECONDS") else None,
            crl_validity=dt.timedelta(seconds=int(env.get("CRL_VALIDITY_SECONDS", "86400"))),
            crl_min_interval=dt.timedelta(milliseconds=int(env.get("CRL_MIN_INTERVAL_MS", "50"))),
            status_buckets=int(env.get("STATUS_BUCKETS", str(1 << 20))),
            holder_buckets=int(env.get("HOLDER_BUCKETS", str(1 << 20))),
            event_batch=int(env.get("EVENT_BATCH", "500")),
            console_insecure_dev_cookies=env.get("CONSOLE_INSECURE_DEV_COOKIES", "0") == "1",
            console_peer_url=env.get("CONSOLE_PEER_URL") or None,
            console_lag_amber=int(env.get("CONSOLE_LAG_AMBER", "1000")),
            console_crl_amber=dt.timedelta(seconds=int(env.get("CONSOLE_CRL_AMBER_SECONDS", "14400"))),
        )

    @property
    def pki_dir(self) -> Path:
        return self.var_dir / "pki"


def refuse_unless_production_ready(env) -> None:
    """Outside development the settings that have development defaults must be given, and the development-only
    ones must not be; one ConfigurationError lists everything that is wrong."""
    problems = []
    if not env.get("REVOCATION_URL"):
        problems.append("REVOCATION_URL (this service's public base URL, written into CRLs) must be set")
    if env.get("REVOCATION_ISSUERS", "dev") == "dev":
        problems.append("REVOCATION_ISSUERS must name the directory of issuer certificates and signing keys; "
                        "the development CA is used only in development")
    if env.get("CONSOLE_INSECURE_DEV_COOKIES") not in (None, "", "0"):
        problems.append("CONSOLE_INSECURE_DEV_COOKIES is for development only and must not be set")
    if problems:
        raise ConfigurationError(
            "The revocation service will not start outside development: " + "; ".join(problems) + ". For "
            f"development on 127.0.0.1 set {DEV_FLAG}=1 (make run does); see docs/configuration.md.")


def load_issuers(config: RevocationConfig) -> dict[str, Issuer]:
    """Issuer slug ("auth", "signing") → the CA certificate, its key for CRLs, and its OCSP responder.

    `dev` (development only): the development CA under var/pki, created on first use. Otherwise a directory
    holding, per slug, `<slug>-ca.pem`, `<slug>-crl-signer.key.pem` and `<slug>-ocsp.pem` + `<slug>-ocsp.key.pem`
    — the platform's delegated responder and CRL signing material for that issuer (docs/configuration.md), read by
    the one issuer loader (jpki/issuer.py), the same the development CA saves its files for.
    """
    if config.issuers_source == "dev":
        if not config.development:
            raise ConfigurationError("The development CA (REVOCATION_ISSUERS=dev) is used only in development.")
        from jpki.devca import DevCA

        ca = DevCA.load_or_create(config.pki_dir, config.base_url)
        return {CRL_ISSUER_SLUG[kind]: ca.issuer(kind) for kind in CertificateKind}
    directory = Path(config.issuers_source)
    try:
        issuers = load_issuer_files(directory)
    except IssuerFilesMissing as missing:
        raise ConfigurationError(f"REVOCATION_ISSUERS={directory} lacks {', '.join(missing.missing)}.") from None
    return {CRL_ISSUER_SLUG[kind]: issuer for kind, issuer in issuers.items()}
