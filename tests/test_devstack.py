"""`make run`'s program: starts a private redis-server under var/, the dev CA and a demo card; stops cleanly."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests

from devstack.processes import free_port
from devstack.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def test_redis_fixture_is_a_real_server(redis_client):
    assert redis_client.ping()
    assert redis_client.info("server")["redis_version"]


def test_redis_server_persists_between_runs(tmp_path):
    with RedisServer(tmp_path, persist=True) as server:
        redis.Redis.from_url(server.url).set("k", "v")
        port = server.port
    with RedisServer(tmp_path, port=port, persist=True) as server:
        assert redis.Redis.from_url(server.url).get("k") == b"v"


def test_devstack_starts_says_what_it_started_and_stops(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MYKEY_VAR": str(tmp_path / "var"),
           "MYKEY_REDIS_PORT": str(free_port()), "MYKEY_REVOCATION_PORT": str(free_port()),
           "MYKEY_IDP_PORT": str(free_port()), "MYKEY_DEMO_RP_PORT": str(free_port()),
           "MYKEY_DEV_TSA_PORT": str(free_port())}
    for inherited in ("REDIS_URL", "REVOCATION_URL", "IDP_ISSUER"):
        env.pop(inherited, None)
    process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("running"):
            break
    output = "".join(lines)
    try:
        assert "redis       started" in output, output
        assert "dev CA" in output and "created virtual My Number Card" in output
        assert "revocation" in output and "idp         http://127.0.0.1:" in output
        assert "dev tsa     http://127.0.0.1:" in output
        assert "demo rp     http://127.0.0.1:" in output and "--reader virtual --card" in output
        assert "signals     pushing" in output  # the signals worker runs, and Example Shop subscribes to it
        store = redis.Redis(port=int(env["MYKEY_REDIS_PORT"]))
        deadline = time.monotonic() + 30
        while not store.hlen("idp:ssf:streams") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.hlen("idp:ssf:streams") == 1
        assert (tmp_path / "var" / "pki" / "ca.json").exists()
        assert (tmp_path / "var" / "cards" / "demo.json").exists()
        # The operator console works with the development operator's token, kept private under var/.
        token_file = tmp_path / "var" / "operator-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        console = re.search(r"^console\s+(http://\S+/operator/)", output, re.MULTILINE).group(1)
        page = requests.post(f"{console}login", data={"token": token_file.read_text().strip()}, timeout=30)
        assert page.status_code == 200 and "Event stream" in page.text and "RP clients" in page.text
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "redis       stopped" in rest


def test_devstack_help_prints_usage_and_starts_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MYKEY_VAR": str(tmp_path / "var"),
           "MYKEY_REDIS_PORT": str(free_port())}
    try:
        shown = subprocess.run([sys.executable, "-m", "devstack", "--help"], cwd=ROOT, env=env, text=True,
                               capture_output=True, timeout=20)
    finally:
        # Before --help was understood, the stack started: make sure no redis-server outlives a failure.
        subprocess.run(["redis-cli", "-p", env["MYKEY_REDIS_PORT"], "shutdown", "nosave"], capture_output=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: python -m devstack") and "MYKEY_IDP_PORT" in shown.stdout
    assert "docs/configuration.md" in shown.stdout
    assert not (tmp_path / "var").exists()  # nothing was started or created
