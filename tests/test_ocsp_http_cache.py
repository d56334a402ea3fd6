"""docs/operators.md's nginx block for an HTTP cache in front of OCSP GETs, run as written in a real nginx (Debian's)
in front of the OCSP data plane under granian: a repeated nonce-less GET is a cache hit, a POST and a nonce GET
never are, and a cached copy outlives a revocation only until its max-age (OCSP_HTTP_MAX_AGE_SECONDS)."""

from __future__ import annotations

import base64
import contextlib
import re
import time
from pathlib import Path

import pytest
import requests
from cryptography.x509 import ocsp

from devstack.processes import Granian, OcspCacheNginx
from tests.test_ocsp import apply, request_der

pytestmark = pytest.mark.timeout(90)

MAX_AGE = 2  # seconds: OCSP_HTTP_MAX_AGE_SECONDS for this test


def status_of(body: bytes) -> ocsp.OCSPCertStatus:
    return ocsp.load_der_ocsp_response(body).certificate_status


def test_nginx_caches_repeated_gets_never_posts_and_keeps_a_copy_only_for_max_age(
        revocation_config, redis_server, redis_client, revocation_services, issue_card, dev_ca, tmp_path):
    assert Path(OcspCacheNginx.NGINX).exists(), "nginx is missing: scripts/bootstrap.sh installs Debian's nginx"
    env = {"REDIS_URL": redis_server.url, "MYKEY_VAR": str(revocation_config.var_dir),
           "REVOCATION_URL": revocation_config.base_url, "STATUS_BUCKETS": "1024", "HOLDER_BUCKETS": "1024",
           "OCSP_HTTP_MAX_AGE_SECONDS": str(MAX_AGE)}
    card = issue_card()
    der = request_der(card["auth"], dev_ca.auth.certificate)
    # 0xFF bytes in the nonce put "/" and "+" into the base64: the path must reach the responder unchanged.
    with_nonce = request_der(card["auth"], dev_ca.auth.certificate, nonce=b"\xff" * 30 + b"\xfb\xef")
    get, get_nonce = f"/ocsp/{base64.b64encode(der).decode()}", f"/ocsp/{base64.b64encode(with_nonce).decode()}"
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(Granian(env, workers=1))
        nginx = OcspCacheNginx(tmp_path / "nginx", upstream)
        url = stack.enter_context(nginx)
        first = requests.get(url + get, timeout=10)
        second = requests.get(url + get, timeout=10)
        assert first.status_code == second.status_code == 200
        assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
        assert second.content == first.content and status_of(first.content) is ocsp.OCSPCertStatus.GOOD
        assert re.fullmatch(r"max-age=(\d+), public, no-transform, must-revalidate",
                            first.headers["Cache-Control"]).group(1) in {str(MAX_AGE), str(MAX_AGE - 1)}
        assert nginx.cached_files() == 1

        for _ in range(2):  # a POST (nonce or not) and a nonce GET reach the responder every time
            for body in (der, with_nonce):
                posted = requests.post(url + "/ocsp", data=body, headers={"Content-Type": "application/ocsp-request"},
                                       timeout=10)
                assert posted.status_code == 200 and "X-Cache-Status" not in posted.headers
            nonce_get = requests.get(url + get_nonce, timeout=10)
            assert nonce_get.headers["X-Cache-Status"] == "MISS"
            assert status_of(nonce_get.content) is ocsp.OCSPCertStatus.GOOD
            assert requests.get(url + "/ocsp/MAA", timeout=10).headers["X-Cache-Status"] == "MISS"  # an error
        assert nginx.cached_files() == 1

        apply(revocation_services, "revocation_requested", card)
        posted = requests.post(url + "/ocsp", data=der, headers={"Content-Type": "application/ocsp-request"},
                               timeout=10)
        assert status_of(posted.content) is ocsp.OCSPCertStatus.REVOKED  # the data plane knows at once
        held = requests.get(url + get, timeout=10)
        if held.headers["X-Cache-Status"] == "HIT":  # the copy nginx holds: the staleness docs/operators.md names
            assert status_of(held.content) is ocsp.OCSPCertStatus.GOOD
        time.sleep(MAX_AGE + 1)
        fresh = requests.get(url + get, timeout=10)
        assert fresh.headers["X-Cache-Status"] in ("EXPIRED", "MISS", "REVALIDATED")
        assert status_of(fresh.content) is ocsp.OCSPCertStatus.REVOKED
        assert requests.get(url + get, timeout=10).headers["X-Cache-Status"] == "HIT"
