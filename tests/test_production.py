"""The production shape: outside development nothing defaults to the development CA, and the whole platform runs
as docs/operators.md describes — nginx terminating TLS in front of both services under gunicorn, trust roots and
issuer keys read from files, `__Host-` cookies — with one card login in Chromium through it."""

from __future__ import annotations

import pytest

from devstack.processes import Gunicorn
from idp.config import ConfigurationError as IdpConfigurationError
from idp.config import IdpConfig
from revocation.config import ConfigurationError as RevocationConfigurationError
from revocation.config import RevocationConfig

# --- refusing to start without production settings ----------------------------------------------------------


def test_the_idp_refuses_to_start_outside_development_without_trust_issuer_and_revocation_url(tmp_path):
    env = {"MYKEY_VAR": str(tmp_path), "IDP_SECRET_FILE": str(tmp_path / "secret")}
    with pytest.raises(IdpConfigurationError) as refused:
        IdpConfig.from_env(env)
    message = str(refused.value)
    assert "IDP_ISSUER" in message and "IDP_TRUST=production" in message and "IDP_TRUST_DIR" in message
    assert "REVOCATION_URL" in message and "MYKEY_DEV=1" in message
    assert not (tmp_path / "pki").exists()  # no development CA was made up on the way


def test_an_https_issuer_is_production_even_with_the_development_flag(tmp_path):
    env = {"MYKEY_DEV": "1", "IDP_ISSUER": "https://id.example.jp", "REVOCATION_URL": "http://rv.example.jp",
           "MYKEY_VAR": str(tmp_path), "IDP_SECRET_FILE": str(tmp_path / "secret")}
    with pytest.raises(IdpConfigurationError, match="IDP_TRUST=production"):
        IdpConfig.from_env(env)
    with pytest.raises(IdpConfigurationError, match="IDP_DEV_CARD is for development only"):
        IdpConfig.from_env({**env, "IDP_TRUST": "production", "IDP_TRUST_DIR": str(tmp_path),
                            "IDP_DEV_CARD": "var/cards/demo.json"})


def test_an_http_issuer_is_refused_outside_development(tmp_path):
    env = {"IDP_ISSUER": "http://id.example.jp", "REVOCATION_URL": "http://rv.example.jp", "IDP_TRUST": "production",
           "IDP_TRUST_DIR": str(tmp_path), "MYKEY_VAR": str(tmp_path), "IDP_SECRET_FILE": str(tmp_path / "secret")}
    with pytest.raises(IdpConfigurationError, match="https:// URL"):
        IdpConfig.from_env(env)
    assert IdpConfig.from_env({**env, "IDP_ISSUER": "https://id.example.jp"}).development is False


def test_a_production_idp_config_never_trusts_the_development_ca(tmp_path):
    from idp.services import load_trust

    config = IdpConfig(issuer="https://id.example.jp", development=False, trust="production", trust_dir=tmp_path,
                       secret=b"s" * 32)
    with pytest.raises(ValueError, match="No auth root"):  # an empty directory: nothing to trust, no fallback
        load_trust(config)
    with pytest.raises(IdpConfigurationError, match="only in development"):
        IdpConfig(issuer="https://id.example.jp", development=False, secret=b"s" * 32).check()


def test_trust_pins_are_checked_when_read(tmp_path):
    base = {"IDP_ISSUER": "https://id.example.jp", "REVOCATION_URL": "http://rv.example.jp",
            "IDP_TRUST": "production", "IDP_TRUST_DIR": str(tmp_path), "IDP_SECRET_FILE": str(tmp_path / "secret")}
    with pytest.raises(IdpConfigurationError, match="IDP_TRUST_PINS"):
        IdpConfig.from_env({**base, "IDP_TRUST_PINS": "auth:not-a-fingerprint"})
    pinned = IdpConfig.from_env({**base, "IDP_TRUST_PINS": "auth:" + "ab:" * 31 + "ab, sign:" + "CD" * 32})
    assert [digest for _, digest in pinned.trust_pins] == ["AB" * 32, "CD" * 32]


def test_the_revocation_service_refuses_to_start_outside_development_without_issuers_and_url(tmp_path):
    with pytest.raises(RevocationConfigurationError) as refused:
        RevocationConfig.from_env({"MYKEY_VAR": str(tmp_path)})
    message = str(refused.value)
    assert "REVOCATION_URL" in message and "REVOCATION_ISSUERS" in message and "MYKEY_DEV=1" in message
    with pytest.raises(RevocationConfigurationError, match="CONSOLE_INSECURE_DEV_COOKIES"):
        RevocationConfig.from_env({"MYKEY_DEV": "1", "REVOCATION_URL": "https://rv.example.jp",
                                   "REVOCATION_ISSUERS": str(tmp_path), "CONSOLE_INSECURE_DEV_COOKIES": "1"})
    with pytest.raises(RevocationConfigurationError, match=r"auth-ca\.pem"):  # files missing: named, not a traceback
        from revocation.config import load_issuers

        load_issuers(RevocationConfig.from_env({"REVOCATION_URL": "http://rv.example.jp",
                                                "REVOCATION_ISSUERS": str(tmp_path)}))
    assert not (tmp_path / "pki").exists()


def test_development_is_asked_for_explicitly(tmp_path):
    config = RevocationConfig.from_env({"MYKEY_DEV": "1", "MYKEY_VAR": str(tmp_path)})
    assert config.development and config.issuers_source == "dev"
    idp = IdpConfig.from_env({"MYKEY_DEV": "1", "MYKEY_VAR": str(tmp_path)})
    assert idp.development and idp.trust == "dev" and idp.issuer == "http://127.0.0.1:8080"


@pytest.mark.parametrize(("app", "missing"), [("revocation.app:create_app()", "REVOCATION_ISSUERS"),
                                              ("idp.app:create_app()", "IDP_TRUST=production")])
def test_gunicorn_without_production_settings_does_not_come_up_and_says_why(app, missing, redis_server, tmp_path):
    env = {"MYKEY_DEV": "0", "REDIS_URL": redis_server.url, "MYKEY_VAR": str(tmp_path),
           "IDP_SECRET_FILE": str(tmp_path / "secret")}
    with pytest.raises(RuntimeError) as refused, Gunicorn(app, env, workers=1):
        pass
    assert missing in str(refused.value) and "will not start outside development" in str(refused.value)
    assert not (tmp_path / "pki").exists()
