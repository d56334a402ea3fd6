"""gunicorn's access log, with deploy/'s settings, goes through the same redaction as every other log line
(observability/logs.py): paths keep their shape, but login handles, serials, OCSP requests and query strings are
cut — and the lines are still written. The OCSP data plane under granian (deploy/granian-ocsp.sh) writes no access
line at all: granian's would not pass through that redaction, and a GET's path is the request."""

from __future__ import annotations

import base64
import secrets

import requests

from devstack.processes import Granian, Gunicorn


def served(app: str, env: dict, log_file, paths: list[str], headers: dict) -> str:
    with Gunicorn(app, env, workers=1, extra_args=["--access-logfile", str(log_file)]) as url:
        for path in paths:
            requests.get(url + path, headers=headers, timeout=10)
    return log_file.read_text()


def test_gunicorn_access_lines_lose_handles_serials_ocsp_requests_and_queries(revocation_config, redis_server,
                                                                               redis_client, tmp_path):
    env = {"REDIS_URL": redis_server.url, "MYKEY_VAR": str(revocation_config.var_dir),
           "REVOCATION_URL": revocation_config.base_url, "STATUS_BUCKETS": "1024", "HOLDER_BUCKETS": "1024",
           "IDP_ISSUER": "http://127.0.0.1:1", "IDP_SECRET_FILE": str(tmp_path / "secret")}
    handle = f"h{secrets.token_urlsafe(16)}"
    serial = f"{secrets.randbits(63) | 1 << 62:X}"
    ocsp_request = base64.urlsafe_b64encode(secrets.token_bytes(60)).decode().rstrip("=")
    nonce, code = f"n{secrets.token_hex(8)}", f"c{secrets.token_hex(8)}"
    referer = {"Referer": f"https://rp.example.jp/callback?code={code}"}

    idp_log = served("deploy.composition:idp_app()", env, tmp_path / "idp-access.log",
                     [f"/api/login/{handle}", f"/authorize?client_id=x&nonce={nonce}"], referer)
    revocation_log = served("deploy.composition:revocation_app()", env, tmp_path / "revocation-access.log",
                            [f"/ocsp/{ocsp_request}", f"/ops/certificates/auth/{serial}?nonce={nonce}"], referer)

    assert '"GET /api/login/… HTTP/1.1"' in idp_log and '"GET /authorize?… HTTP/1.1"' in idp_log
    assert '"GET /ocsp/… HTTP/1.1"' in revocation_log
    assert '"GET /ops/certificates/auth/…?… HTTP/1.1"' in revocation_log
    for log in (idp_log, revocation_log):
        assert len([line for line in log.splitlines() if "/healthz" not in line]) == 2, log
        assert "rp.example.jp/callback?…" in log
        for secret in (handle, serial, ocsp_request, nonce, code):
            assert secret not in log, log


def test_the_ocsp_data_plane_under_granian_writes_no_access_line(revocation_config, redis_server, redis_client,
                                                                 issue_card, dev_ca):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    env = {"REDIS_URL": redis_server.url, "MYKEY_VAR": str(revocation_config.var_dir),
           "REVOCATION_URL": revocation_config.base_url, "STATUS_BUCKETS": "1024", "HOLDER_BUCKETS": "1024"}
    certificate = issue_card()["auth"]
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, dev_ca.auth.certificate, hashes.SHA1()).build()
    encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
    garbage = base64.urlsafe_b64encode(secrets.token_bytes(60)).decode().rstrip("=")
    server = Granian(env, workers=1)
    with server as url:
        assert requests.get(f"{url}/ocsp/{encoded}", timeout=10).status_code == 200
        for path in (f"/ocsp/{garbage}", f"/nowhere/{garbage}?nonce={garbage}"):
            requests.get(url + path, timeout=10)
        requests.post(f"{url}/ocsp", data=request.public_bytes(serialization.Encoding.DER), timeout=10,
                      headers={"Content-Type": "application/ocsp-request"})
        server.log.flush()
        server.log.seek(0)
        output = server.log.read().decode(errors="replace")
    assert "GET " not in output and "POST " not in output and "/ocsp" not in output, output
    serial = certificate.serial_number
    for secret in (encoded, garbage, str(serial), f"{serial:X}", f"{serial:x}"):
        assert secret not in output, output
