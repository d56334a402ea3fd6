"""The production shape: outside development nothing defaults to the development CA, and the whole platform runs
as docs/operators.md describes — nginx terminating TLS in front of both services under gunicorn, trust roots and
issuer keys read from files, `__Host-` cookies — with one card login in Chromium through it."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from demo_rp.app import create_app as create_demo_rp
from devstack.http import LiveServer
from devstack.processes import Granian, Gunicorn, free_port, stop
from idp.config import ConfigurationError as IdpConfigurationError
from idp.config import IdpConfig
from idp.login.trust import fingerprint
from idp.oidc.clients import ClientRegistry
from jpki.devca import DevCA
from jpki.issuer import save_issuers
from jpki.profile import CRL_ISSUER_SLUG
from nfc_bridge.card_file import new_card_state, write_card_file
from revocation.config import ConfigurationError as RevocationConfigurationError
from revocation.config import RevocationConfig
from revocation.services import build_services as build_revocation_services
from tests.conftest import AUTH_PIN, SIGN_PIN, register_virtual_card
from tests.idp_flow import bridge_login
from tests.log_registry import register_sensitive

# --- refusing to start without production settings ----------------------------------------------------------


def test_the_idp_refuses_to_start_outside_development_without_trust_issuer_and_revocation_url(tmp_path):
    env = {"MYKEY_VAR": str(tmp_path), "IDP_SECRET_FILE": str(tmp_path / "secret")}
    with pytest.raises(IdpConfigurationError) as refused:
        IdpConfig.from_env(env)
    message = str(refused.value)
    assert "IDP_ISSUER" in message and "IDP_TRUST=production" in message and "IDP_TRUST_DIR" in message
    assert "REVOCATION_URL" in message and "MYKEY_DEV=1" in message
    assert not (tmp_path / "pki").exists()  # no development CA was made up on the way


def test_production_never_makes_up_the_platform_secret(tmp_path):
    (tmp_path / "trust").mkdir()
    env = {"IDP_ISSUER": "https://id.example.jp", "REVOCATION_URL": "https://rv.example.jp", "IDP_TRUST": "production",
           "IDP_TRUST_DIR": str(tmp_path / "trust"), "MYKEY_VAR": str(tmp_path)}
    with pytest.raises(IdpConfigurationError, match="IDP_SECRET_FILE must name"):
        IdpConfig.from_env(env)
    with pytest.raises(IdpConfigurationError, match="does not exist"):
        IdpConfig.from_env({**env, "IDP_SECRET_FILE": str(tmp_path / "secret")})
    assert not (tmp_path / "secret").exists() and not (tmp_path / "idp").exists()


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
    (tmp_path / "secret").write_text(secrets.token_hex(32))
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
    (tmp_path / "secret").write_text(secrets.token_hex(32))
    with pytest.raises(IdpConfigurationError, match="IDP_TRUST_PINS"):
        IdpConfig.from_env({**base, "IDP_TRUST_PINS": "auth:not-a-fingerprint"})
    pinned = IdpConfig.from_env({**base, "IDP_TRUST_PINS": "auth:" + "ab:" * 31 + "ab, signing:" + "CD" * 32})
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


@pytest.mark.parametrize(("app", "missing"), [("deploy.composition:revocation_app()", "REVOCATION_ISSUERS"),
                                              ("deploy.composition:idp_app()", "IDP_TRUST=production"),
                                              ("deploy/granian-ocsp.sh", "REVOCATION_ISSUERS")])
def test_gunicorn_without_production_settings_does_not_come_up_and_says_why(app, missing, redis_server, tmp_path):
    env = {"MYKEY_DEV": "0", "REDIS_URL": redis_server.url, "MYKEY_VAR": str(tmp_path),
           "IDP_SECRET_FILE": str(tmp_path / "secret")}
    server = Granian(env, workers=1) if app.endswith(".sh") else Gunicorn(app, env, workers=1)
    with pytest.raises(RuntimeError) as refused, server:
        pass
    assert missing in str(refused.value) and "will not start outside development" in str(refused.value)
    assert not (tmp_path / "pki").exists()


# --- the production shape, end to end ----------------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def write_pem(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)
    return path


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_tls_ca(directory: Path) -> tuple[Path, Path, Path, str]:
    """A CA made here for the proxy's TLS and a certificate for 127.0.0.1 from it: (CA PEM, certificate PEM, key
    PEM, base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's SPKI allow-list takes it)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MyKey production-shape test TLS CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return (write_pem(directory / "ca.pem", cert_pem(ca)), write_pem(directory / "server.pem", cert_pem(leaf)),
            write_pem(directory / "server.key", key_pem(key), private=True),
            base64.b64encode(hashlib.sha256(spki).digest()).decode())


def write_production_layout(ca: DevCA, trust_dir: Path, issuers_dir: Path) -> str:
    """The files docs/configuration.md describes, here from the dev CA: the IdP's roots (`auth-*.pem`,
    `signing-*.pem`) and the revocation service's issuer material in the one issuer layout (`jpki.issuer`).
    Returns the IDP_TRUST_PINS value."""
    pins = []
    for kind, slug in CRL_ISSUER_SLUG.items():
        issuer = ca.issuer(kind)
        write_pem(trust_dir / f"{slug}-root.pem", cert_pem(issuer.certificate))
        pins.append(f"{slug}:{fingerprint(issuer.certificate)}")
    save_issuers(issuers_dir, (ca.auth, ca.signing))
    return ",".join(pins)


NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;  # the services write the (redacted) access log; a proxy's own log needs the same care
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {certificate};
    ssl_certificate_key {key};
{servers}
}}
"""
NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }}
{ocsp}    }}
"""
# OCSP to the data plane (deploy/granian-ocsp.sh): POST /ocsp and GET /ocsp/<request>; the rest stays with the app.
NGINX_OCSP = """\
        location = /ocsp {{ proxy_pass {upstream}; }}
        location /ocsp/ {{ proxy_pass {upstream}; }}
"""


@contextlib.contextmanager
def nginx(prefix: Path, certificate: Path, key: Path, ca: Path, routes: dict[int, str],
          ocsp: dict[int, str] | None = None):
    """nginx as a non-daemon child terminating TLS on loopback `port → upstream URL` (and, for a port in `ocsp`,
    its /ocsp paths to that upstream), its files under `prefix`."""
    prefix.mkdir(parents=True, exist_ok=True)
    servers = "".join(NGINX_SERVER.format(port=port, upstream=upstream, ocsp=NGINX_OCSP.format(
        upstream=(ocsp or {})[port]) if port in (ocsp or {}) else "") for port, upstream in routes.items())
    conf = prefix / "nginx.conf"
    # As root nginx would hand its workers to `nobody`, who cannot write the temp paths under pytest's tmp_path.
    conf.write_text(NGINX_CONF.format(user="user root;\n" if os.geteuid() == 0 else "", prefix=prefix,
                                      certificate=certificate, key=key, servers=servers))
    process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        for port in routes:
            while True:
                try:
                    requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(ca), timeout=5)
                    break
                except requests.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not come up:\n{(prefix / 'error.log').read_text()}") from None
                    time.sleep(0.1)
        yield process
    finally:
        stop(process)


def test_a_card_login_in_chromium_through_nginx_tls_and_gunicorn_with_production_settings(
        redis_server, redis_client, tmp_path, monkeypatch):
    assert Path(NGINX).exists(), "nginx is missing: scripts/bootstrap.sh installs Debian's nginx"
    assert Path(CHROMIUM).exists(), "chromium is missing: scripts/bootstrap.sh installs Debian's chromium"
    from playwright.sync_api import sync_playwright

    tls_ca, tls_certificate, tls_key, spki = make_tls_ca(tmp_path / "tls")
    idp_port, revocation_port = free_port(), free_port()
    idp_url, revocation_url = f"https://127.0.0.1:{idp_port}", f"https://127.0.0.1:{revocation_port}"
    jpki_ca = DevCA.generate(revocation_url)  # stands in for J-LIS: its certificates name our revocation service
    pins = write_production_layout(jpki_ca, tmp_path / "trust", tmp_path / "issuers")
    var = tmp_path / "var"
    secret_file = var / "idp" / "secret"
    secret_file.parent.mkdir(parents=True)
    secret_file.write_text(secrets.token_hex(32))  # made once by the operator; production never makes it
    base = {"MYKEY_DEV": "0", "REDIS_URL": redis_server.url, "MYKEY_VAR": str(var), "REVOCATION_URL": revocation_url}
    revocation_env = {**base, "REVOCATION_ISSUERS": str(tmp_path / "issuers")}
    idp_env = {**base, "IDP_ISSUER": idp_url, "IDP_TRUST": "production", "IDP_TRUST_DIR": str(tmp_path / "trust"),
               "IDP_TRUST_PINS": pins, "IDP_SECRET_FILE": str(secret_file),
               "SSL_CERT_FILE": str(tls_ca)}  # the IdP asks the revocation service for OCSP through nginx
    # The browser side trusts the test CA too: the card bridge (urllib) and the demo RP's Authlib client.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_ca))

    card = tmp_path / "card.json"
    state = new_card_state(jpki_ca, AUTH_PIN, SIGN_PIN)
    write_card_file(card, state)
    register_sensitive(*(x509.load_der_x509_certificate(bytes.fromhex(state["files"][fid])).serial_number
                         for fid in ("000A", "0001")))
    revocation = build_revocation_services(RevocationConfig.from_env(revocation_env), redis_client)
    register_virtual_card(revocation, card)
    rp_port = free_port()
    rp_base = f"http://127.0.0.1:{rp_port}"
    client, secret = ClientRegistry(redis_client).add("Example Shop", [f"{rp_base}/callback"])

    with contextlib.ExitStack() as stack:
        revocation_server = Gunicorn("deploy.composition:revocation_app()", revocation_env, workers=1)
        revocation_upstream = stack.enter_context(revocation_server)
        idp_upstream = stack.enter_context(Gunicorn("deploy.composition:idp_app()", idp_env, workers=1))
        ocsp_upstream = stack.enter_context(Granian(revocation_env, workers=1))  # the OCSP data plane
        stack.enter_context(nginx(tmp_path / "nginx", tls_certificate, tls_key, tls_ca,
                                  {idp_port: idp_upstream, revocation_port: revocation_upstream},
                                  ocsp={revocation_port: ocsp_upstream}))
        rp = stack.enter_context(LiveServer(create_demo_rp(idp_url, client.client_id, secret, rp_base), rp_port))
        assert not (var / "pki").exists()  # no development CA anywhere in this deployment
        discovery = requests.get(f"{idp_url}/.well-known/openid-configuration", timeout=10).json()
        assert discovery["issuer"] == idp_url and discovery["jwks_uri"].startswith(idp_url)

        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # Chromium trusts the test CA's server certificate by its public key, and nothing else.
            args=[f"--ignore-certificate-errors-spki-list={spki}", "--no-sandbox", "--disable-gpu",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        stack.callback(browser.close)
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(rp.url)
        page.click("#login")
        page.wait_for_url(f"{idp_url}/login")
        handle_url = re.search(r"(https://\S+/api/login/\S+)", page.inner_text("#command")).group(1)
        assert not page.locator("#dev-command").count()  # no development card command in production
        assert handle_url.startswith(f"{idp_url}/api/login/")
        answered = bridge_login(handle_url, card)
        assert answered.returncode == 0, answered.stderr
        page.wait_for_selector("#approve")
        page.click("#approve")
        page.wait_for_url(f"{rp.url}/")
        assert page.locator("#welcome").is_visible() and '"acr": "aal3"' in page.inner_text("#claims")
        # Cookies are per host, not per port (RFC 6265 §8.5): the demo RP's Flask `session` on http://127.0.0.1 shows
        # up here too. Every cookie of the IdP's is a `__Host-` one: Secure, Path=/, no Domain.
        idp_cookies = [c for c in context.cookies(idp_url) if c["name"] != "session"]
        assert "__Host-mykey-session" in {c["name"] for c in idp_cookies}
        assert all(c["name"].startswith("__Host-") and c["secure"] and c["httpOnly"] and c["path"] == "/"
                   for c in idp_cookies), idp_cookies
        assert requests.get(f"{revocation_url}/crl/auth/0.crl", timeout=10).headers["Content-Type"] == \
            "application/pkix-crl"
        # /ocsp goes to the data plane: it still answers, through nginx, when the revocation app is gone.
        revocation_server.__exit__()
        auth = x509.load_der_x509_certificate(bytes.fromhex(state["files"]["000A"]))
        request = ocsp.OCSPRequestBuilder().add_certificate(auth, jpki_ca.auth.certificate, hashes.SHA1()).build()
        answer = requests.post(f"{revocation_url}/ocsp", data=request.public_bytes(serialization.Encoding.DER),
                               headers={"Content-Type": "application/ocsp-request"}, timeout=10)
        assert ocsp.load_der_ocsp_response(answer.content).certificate_status is ocsp.OCSPCertStatus.GOOD
        assert requests.get(f"{revocation_url}/crl/auth/0.crl", timeout=10).status_code == 502
