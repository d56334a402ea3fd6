"""Redis going away under running services: every answer is a 503 with Retry-After that says so, never a 500."""

from __future__ import annotations

import secrets

import redis
import requests

from devstack.http import LiveServer
from devstack.processes import free_port
from devstack.redis_server import RedisServer


def test_both_services_answer_503_with_retry_after_while_redis_is_down(tmp_path, dev_ca):
    from deploy.composition import StatusStoreRecords
    from idp.app import create_app as create_idp
    from idp.config import IdpConfig
    from idp.services import build_services as build_idp
    from revocation.app import create_app as create_revocation
    from revocation.config import RevocationConfig
    from revocation.services import build_services as build_revocation

    server = RedisServer(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=2)
        var = tmp_path / "var"
        dev_ca.save(var / "pki")
        revocation_config = RevocationConfig(redis_url=server.url, var_dir=var, base_url=dev_ca.revocation_url,
                                             status_buckets=64, holder_buckets=64)
        port = free_port()
        idp_config = IdpConfig(issuer=f"http://127.0.0.1:{port}", redis_url=server.url, var_dir=var,
                               revocation_url=dev_ca.revocation_url, insecure_dev_cookies=True,
                               secret=secrets.token_bytes(32))
        revocation_services = build_revocation(revocation_config, client)
        revocation_app = create_revocation(revocation_config, revocation_services)
        idp_app = create_idp(idp_config, build_idp(idp_config, client,
                                                   certificates=StatusStoreRecords(revocation_services.store)))
        with LiveServer(revocation_app) as revocation, LiveServer(idp_app, port=port) as idp:
            assert requests.get(f"{idp.url}/healthz", timeout=10).status_code == 200
            server.stop()
            answers = [
                requests.get(f"{idp.url}/healthz", timeout=10),
                requests.get(f"{idp.url}/api/login/{'h' * 22}", timeout=10),
                requests.post(f"{idp.url}/api/login/submit", json={"submit_token": "t" * 22}, timeout=10),
                requests.get(f"{revocation.url}/healthz", timeout=10),
                requests.get(f"{revocation.url}/crl/auth/0.crl", timeout=10),
            ]
    finally:
        server.stop()
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text[:200])
        assert answer.headers["Retry-After"].isdigit()
        assert answer.json()["error"] == "temporarily_unavailable"
