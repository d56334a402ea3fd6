"""gunicorn's access log, with deploy/'s settings, goes through the same redaction as every other log line
(observability/logs.py): paths keep their shape, but login handles, serials, OCSP requests and query strings are
cut — and the lines are still written."""

from __future__ import annotations

import base64
import secrets

import requests

from devstack.processes import Gunicorn


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
