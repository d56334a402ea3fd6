"""Both services run under gunicorn, and the OCSP data plane under granian, as in production: real worker processes
with deploy/'s settings, configured by the environment."""

from __future__ import annotations

import contextlib

import pytest
import requests
from cryptography.hazmat.primitives import hashes

from devstack.processes import Granian, Gunicorn
from tests.test_ocsp import apply, openssl_ocsp


@pytest.fixture
def gunicorn(revocation_config, redis_server, redis_client):
    with contextlib.ExitStack() as servers:
        def start(app: str, extra_env: dict) -> str:
            return servers.enter_context(Gunicorn(app, service_env(revocation_config, redis_server, extra_env)))

        yield start


def service_env(revocation_config, redis_server, extra_env: dict | None = None) -> dict[str, str]:
    return {"REDIS_URL": redis_server.url, "MYKEY_VAR": str(revocation_config.var_dir),
            "REVOCATION_URL": revocation_config.base_url, "STATUS_BUCKETS": "1024", "HOLDER_BUCKETS": "1024",
            "MYKEY_JSON_LOGS": "1", **(extra_env or {})}


def test_revocation_service_under_gunicorn_answers_ocsp_and_crls(gunicorn, issue_card, dev_ca):
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import ocsp

    url = gunicorn("deploy.composition:revocation_app()", {})
    card = issue_card()
    request = ocsp.OCSPRequestBuilder().add_certificate(card["auth"], dev_ca.auth.certificate, hashes.SHA1()).build()
    for _ in range(4):  # more than one worker answers
        answer = requests.post(f"{url}/ocsp", data=request.public_bytes(serialization.Encoding.DER), timeout=10,
                               headers={"Content-Type": "application/ocsp-request"})
        assert ocsp.load_der_ocsp_response(answer.content).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert requests.get(f"{url}/crl/auth/0.crl", timeout=10).headers["Content-Type"] == "application/pkix-crl"
    assert 'mykey_ocsp_responses_total{status="good"} 4.0' in requests.get(f"{url}/metrics", timeout=10).text


def test_idp_under_gunicorn_serves_discovery_with_shared_keys(gunicorn, tmp_path):
    url = gunicorn("deploy.composition:idp_app()",
                   {"IDP_ISSUER": "http://127.0.0.1:1", "IDP_SECRET_FILE": str(tmp_path / "s")})
    kids = {tuple(sorted(k["kid"] for k in requests.get(f"{url}/jwks", timeout=10).json()["keys"])) for _ in range(6)}
    assert len(kids) == 1 and len(next(iter(kids))) == 2  # the same two keys (RS256, ES256) from every worker
    assert requests.get(f"{url}/.well-known/openid-configuration", timeout=10).json()["issuer"] == "http://127.0.0.1:1"


def test_the_ocsp_data_plane_under_granian_answers_openssl_and_nothing_else(revocation_config, redis_server,
                                                                            redis_client, revocation_services,
                                                                            issue_card, dev_ca, tmp_path):
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import ocsp

    good, held = issue_card(), issue_card()
    apply(revocation_services, "card_lost", held)
    with Granian(service_env(revocation_config, redis_server)) as url:
        service = type("Responder", (), {"url": url})
        for nonce in (True, False):
            out, block = openssl_ocsp(service, dev_ca.auth.certificate, good["auth"], tmp_path, nonce)
            assert block.split("\n")[0].endswith(": good") and ("OCSP Nonce" in out) is nonce
            _, block = openssl_ocsp(service, dev_ca.auth.certificate, held["auth"], tmp_path, nonce)
            assert block.split("\n")[0].endswith(": revoked") and "\tReason: certificateHold\n" in block
        request = ocsp.OCSPRequestBuilder().add_certificate(good["auth"], dev_ca.auth.certificate,
                                                            hashes.SHA1()).build()
        encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
        answer = requests.get(f"{url}/ocsp/{encoded}", timeout=10)
        assert answer.headers["Cache-Control"].startswith("max-age=")
        assert ocsp.load_der_ocsp_response(answer.content).certificate_status is ocsp.OCSPCertStatus.GOOD
        assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
        for path in ("/metrics", "/crl/auth/0.crl", "/ops/certificates/auth/1", "/operator/"):
            refused = requests.get(f"{url}{path}", timeout=10)
            assert refused.status_code == 404 and refused.json()["error"] == "not_found"
        assert requests.post(f"{url}/healthz", timeout=10).status_code == 405
