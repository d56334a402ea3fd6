"""The IdP's configuration, read from the environment in this one place.

| variable | meaning | default |
|---|---|---|
| IDP_ISSUER | the OpenID Provider's issuer URL (also the login origin the card signs) | http://127.0.0.1:8080 |
| REDIS_URL, REDIS_CLUSTER | as for the revocation service (one Redis for both) | redis://127.0.0.1:6390/0 |
| MYKEY_VAR | state directory (dev CA in `$MYKEY_VAR/pki`, IdP secrets in `$MYKEY_VAR/idp`) | var |
| REVOCATION_URL | the revocation service: OCSP at `/ocsp`, CRLs at `/crl/...` | http://127.0.0.1:8081 |
| IDP_TRUST | `dev` (the dev CA's roots) or `production` (J-LIS PEMs in IDP_TRUST_DIR, pinned by fingerprint) | dev |
| IDP_TRUST_DIR | directory of `auth-*.pem` and `sign-*.pem` J-LIS roots for `production` | — |
| IDP_INSECURE_DEV_COOKIES | 1 allows plain-http cookies without `__Host-`/Secure, only for a 127.0.0.1 issuer | 0 |
| STATUS_BUCKETS / HOLDER_BUCKETS | the revocation store's bucket counts (read-only use here) | 1048576 |
| IDP_DEV_CARD | development only: a virtual card file whose login command the login page shows too | — |
| IDP_SECRET_FILE | the platform secret (keys for MyKey, pairwise sub, sealing) | $MYKEY_VAR/idp/secret |
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jpki.devca import DEFAULT_REVOCATION_URL

DEFAULT_ISSUER = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class IdpConfig:
    issuer: str = DEFAULT_ISSUER
    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_cluster: bool = False
    var_dir: Path = Path("var")
    revocation_url: str = DEFAULT_REVOCATION_URL
    trust: str = "dev"
    trust_dir: Path | None = None
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
    status_buckets: int = 1 << 20  # must match the revocation service's STATUS_BUCKETS / HOLDER_BUCKETS
    holder_buckets: int = 1 << 20

    @classmethod
    def from_env(cls, env: dict | None = None) -> IdpConfig:
        env = os.environ if env is None else env
        var_dir = Path(env.get("MYKEY_VAR", "var"))
        config = cls(
            issuer=env.get("IDP_ISSUER", DEFAULT_ISSUER).rstrip("/"),
            redis_url=env.get("REDIS_URL", cls.redis_url),
            redis_cluster=env.get("REDIS_CLUSTER", "0") == "1",
            var_dir=var_dir,
            revocation_url=env.get("REVOCATION_URL", DEFAULT_REVOCATION_URL).rstrip("/"),
            trust=env.get("IDP_TRUST", "dev"),
            trust_dir=Path(env["IDP_TRUST_DIR"]) if env.get("IDP_TRUST_DIR") else None,
            insecure_dev_cookies=env.get("IDP_INSECURE_DEV_COOKIES", "0") == "1",
            dev_card=env.get("IDP_DEV_CARD") or None,
            status_buckets=int(env.get("STATUS_BUCKETS", str(1 << 20))),
            holder_buckets=int(env.get("HOLDER_BUCKETS", str(1 << 20))),
            secret=load_or_create_secret(Path(env.get("IDP_SECRET_FILE", var_dir / "idp" / "secret"))),
        )
        config.check()
        return config

    def check(self) -> None:
        if len(self.secret) < 32:
            raise ValueError("the platform secret must be at least 32 bytes")
        if self.insecure_dev_cookies and urlsplit(self.issuer).hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("IDP_INSECURE_DEV_COOKIES is only allowed for an issuer on 127.0.0.1")

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
        import hashlib
        import hmac

        return hmac.new(self.secret, purpose.encode(), hashlib.sha256).digest()


def load_or_create_secret(path: Path) -> bytes:
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex())
    return secret
