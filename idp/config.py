"""The IdP's configuration, read from the environment in this one place.

docs/configuration.md is the reference for every variable; in short:

| variable | meaning | default |
|---|---|---|
| MYKEY_DEV | 1 marks development: the defaults below (loopback URLs, the dev CA's roots) are allowed | unset |
| IDP_ISSUER | the issuer URL (the login origin the card signs), https in production | http://127.0.0.1:8080 (dev) |
| REDIS_URL, REDIS_CLUSTER | as for the revocation service (one Redis for both) | redis://127.0.0.1:6390/0 |
| MYKEY_VAR | state directory (dev CA in `$MYKEY_VAR/pki`, IdP secrets in `$MYKEY_VAR/idp`) | var |
| REVOCATION_URL | the revocation service: OCSP at `/ocsp`, CRLs at `/crl/...` | http://127.0.0.1:8081 (dev) |
| IDP_TRUST | `dev` (the dev CA's roots, development only) or `production` (pinned PEMs in IDP_TRUST_DIR) | dev (dev) |
| IDP_TRUST_DIR | directory of `auth-*.pem` and `signing-*.pem` roots for `production` | — |
| IDP_TRUST_PINS | more pinned root fingerprints besides J-LIS's: `auth:<SHA-256 hex>,signing:<SHA-256 hex>` | — |
| IDP_INSECURE_DEV_COOKIES | 1 allows plain-http cookies without `__Host-`/Secure: development, 127.0.0.1 only | 0 |
| IDP_DEV_CARD | development only: a virtual card file whose login command the login page shows too | — |
| IDP_SECRET_FILE | the platform secret (keys for MyKey, pairwise sub, sealing) | $MYKEY_VAR/idp/secret |
| IDP_REQUIRE_PAR | 1: every client must push its authorization requests (RFC 9126) | 0 |
| IDP_PAR_TTL | seconds a pushed request's request_uri may wait for its first use, 1–60 | 60 |
| IDP_DPOP_NONCE | 1: DPoP proofs at the token endpoint must carry a server nonce (RFC 9449 §8) | 1 |

Outside development — no `MYKEY_DEV=1`, or an https issuer — nothing defaults: `from_env` refuses to build a
configuration without an https IDP_ISSUER, IDP_TRUST=production with IDP_TRUST_DIR, and REVOCATION_URL, and
refuses the development-only settings, naming each one (`ConfigurationError`). A production IdP thus never
trusts, or creates, the development CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jpki.issuer import DEFAULT_REVOCATION_URL
from jpki.profile import CertificateKind
from wire.errors import FixedCodeError

DEV_FLAG = "MYKEY_DEV"  # `make run` (devstack) and the test suite set it; production never does
DEFAULT_ISSUER = "http://127.0.0.1:8080"  # development only: devstack's IdP port
_PIN_KINDS = {"auth": CertificateKind.AUTH, "signing": CertificateKind.SIGNING}
_FINGERPRINT = re.compile(r"[0-9A-F]{64}")


class ConfigurationError(FixedCodeError, ValueError):
    """The environment does not describe an IdP that may start; the message names what to set or unset."""

    code = "configuration_refused"


@dataclass(frozen=True)
class IdpConfig:
    issuer: str = DEFAULT_ISSUER
    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_cluster: bool = False
    var_dir: Path = Path("var")
    revocation_url: str = DEFAULT_REVOCATION_URL
    trust: str = "dev"
    trust_dir: Path | None = None
    trust_pins: tuple[tuple[CertificateKind, str], ...] = ()  # extra pinned root fingerprints (IDP_TRUST_PINS)
    fetch_ca_file: str | None = None  # CAs for fetching clients' jwks_uri / sector_identifier_uri
    development: bool = True  # False: built by from_env for production; the dev CA is then refused
    insecure_dev_cookies: bool = False
    secret: bytes = b""
    login_ttl: dt.timedelta = dt.timedelta(minutes=5)  # Web eID: a challenge lives at most 5 minutes
    session_ttl: dt.timedelta = dt.timedelta(hours=1)
    code_ttl: dt.timedelta = dt.timedelta(minutes=1)
    access_token_ttl: dt.timedelta = dt.timedelta(minutes=10)
    refresh_token_ttl: dt.timedelta = dt.timedelta(days=1)
    id_token_ttl: dt.timedelta = dt.timedelta(minutes=10)
    key_rotation_overlap: dt.timedelta = dt.timedelta(hours=1)
    max_body_bytes: int = 64 * 1024
    dev_card: str | None = None  # development: the login page also shows the virtual-card command
    # FAPI 2.0 (idp/oidc/par.py, idp/oidc/dpop.py)
    require_par: bool = False
    par_ttl: int = 60
    dpop_nonce: bool = True

    @classmethod
    def from_env(cls, env: dict | None = None) -> IdpConfig:
        env = os.environ if env is None else env
        issuer = env.get("IDP_ISSUER", DEFAULT_ISSUER).rstrip("/")
        development = is_development(env, issuer)
        if not development:
            refuse_unless_production_ready(env)
        trust = env.get("IDP_TRUST", "dev")
        if trust not in ("dev", "production"):
            raise ConfigurationError(f"IDP_TRUST must be `dev` or `production`, not {trust!r}.")
        var_dir = Path(env.get("MYKEY_VAR", "var"))
        config = cls(
            issuer=issuer,
            redis_url=env.get("REDIS_URL", cls.redis_url),
            redis_cluster=env.get("REDIS_CLUSTER", "0") == "1",
            var_dir=var_dir,
            revocation_url=env.get("REVOCATION_URL", DEFAULT_REVOCATION_URL).rstrip("/"),
            trust=trust,
            trust_dir=Path(env["IDP_TRUST_DIR"]) if env.get("IDP_TRUST_DIR") else None,
            trust_pins=parse_trust_pins(env.get("IDP_TRUST_PINS", "")),
            fetch_ca_file=env.get("IDP_FETCH_CA_FILE") or None,
            development=development,
            insecure_dev_cookies=env.get("IDP_INSECURE_DEV_COOKIES", "0") == "1",
            dev_card=env.get("IDP_DEV_CARD") or None,
            require_par=_switch(env, "IDP_REQUIRE_PAR", False),
            par_ttl=_par_ttl(env.get("IDP_PAR_TTL", "60")),
            dpop_nonce=_switch(env, "IDP_DPOP_NONCE", True),
            secret=(load_or_create_secret if development else load_secret)(
                Path(env.get("IDP_SECRET_FILE", var_dir / "idp" / "secret"))),
        )
        config.check()
        return config

    def check(self) -> None:
        if len(self.secret) < 32:
            raise ValueError("the platform secret must be at least 32 bytes")
        if self.insecure_dev_cookies and urlsplit(self.issuer).hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("IDP_INSECURE_DEV_COOKIES is only allowed for an issuer on 127.0.0.1")
        if not self.development and self.trust == "dev":
            raise ConfigurationError("The development CA's roots (IDP_TRUST=dev) are trusted only in development.")

    @property
    def origin(self) -> str:
        """The origin the card signs: scheme://host[:port] of the issuer (Web eID's origin binding)."""
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def pki_dir(self) -> Path:
        return self.var_dir / "pki"

    def subkey(self, purpose: str) -> bytes:
        """A separate key per use of the platform secret, so that one HMAC never answers for another."""
        return hmac.new(self.secret, purpose.encode(), hashlib.sha256).digest()


def is_development(env, issuer: str) -> bool:
    """Development is asked for explicitly (MYKEY_DEV=1) and never holds for an https issuer."""
    return env.get(DEV_FLAG) == "1" and urlsplit(issuer).scheme != "https"


def refuse_unless_production_ready(env) -> None:
    """Outside development every setting that has a development default must be given, and none of the
    development-only ones may be; one ConfigurationError lists everything that is wrong."""
    problems = []
    issuer = env.get("IDP_ISSUER", "")
    if urlsplit(issuer).scheme != "https":
        # OpenID Connect Discovery 1.0 §3: the issuer is a URL using the https scheme.
        problems.append("IDP_ISSUER must be this OpenID Provider's https:// URL"
                        + (f" (it is {issuer!r})" if issuer else " (it is not set)"))
    if env.get("IDP_TRUST") != "production" or not env.get("IDP_TRUST_DIR"):
        problems.append("IDP_TRUST=production and IDP_TRUST_DIR (the directory of pinned auth-*.pem and "
                        "signing-*.pem roots) must be set; the development CA's roots are never trusted here")
    if not env.get("REVOCATION_URL"):
        problems.append("REVOCATION_URL (the revocation service's base URL) must be set")
    if not env.get("IDP_SECRET_FILE"):
        # Every IdP process must hold the same secret (MyKey lookups, pairwise `sub`): one made up at start-up on
        # a second machine would give every holder a new identity there.
        problems.append("IDP_SECRET_FILE must name the platform secret's file, made once and shared by every "
                        "IdP process (e.g. `openssl rand -hex 32`)")
    problems += [f"{name} is for development only and must not be set"
                 for name in ("IDP_INSECURE_DEV_COOKIES", "IDP_DEV_CARD") if env.get(name) not in (None, "", "0")]
    if problems:
        raise ConfigurationError(
            "The IdP will not start outside development: " + "; ".join(problems) + ". For development on "
            f"127.0.0.1 set {DEV_FLAG}=1 (make run does); see docs/configuration.md.")


def _switch(env, name: str, default: bool) -> bool:
    value = env.get(name)
    if value in (None, ""):
        return default
    if value not in ("0", "1"):
        raise ConfigurationError(f"{name} must be 0 or 1, not {value!r}.")
    return value == "1"


def _par_ttl(value: str) -> int:
    # FAPI 2.0 Security Profile §5.3.2.2: a request_uri's expires_in is under 600 s; we keep it to a minute.
    if not value.isdigit() or not 1 <= int(value) <= 60:
        raise ConfigurationError(f"IDP_PAR_TTL must be a whole number of seconds from 1 to 60, not {value!r}.")
    return int(value)


def parse_trust_pins(value: str) -> tuple[tuple[CertificateKind, str], ...]:
    """`auth:<SHA-256 hex>,signing:<SHA-256 hex>` (colons inside the hex allowed) → (kind, fingerprint) pairs."""
    pins = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        kind, _, digest = item.partition(":")
        digest = digest.replace(":", "").replace(" ", "").upper()
        if kind not in _PIN_KINDS or not _FINGERPRINT.fullmatch(digest):
            raise ConfigurationError("IDP_TRUST_PINS must list `auth:<fingerprint>` or `signing:<fingerprint>` "
                                     "entries, each a SHA-256 fingerprint in hexadecimal, separated by commas.")
        pins.append((_PIN_KINDS[kind], digest))
    return tuple(pins)


def load_secret(path: Path) -> bytes:
    """The platform secret, hexadecimal in `path`; outside development it is never created here."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise ConfigurationError(f"IDP_SECRET_FILE names {path}, which does not exist: create it once "
                                 "(e.g. `openssl rand -hex 32`) and give every IdP process the same file.") from None
    except ValueError:
        raise ConfigurationError(f"IDP_SECRET_FILE ({path}) must hold the secret in hexadecimal.") from None


def load_or_create_secret(path: Path) -> bytes:
    """Development: the secret under var/, made on first start."""
    if path.exists():
        return load_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex())
    return secret
