"""Child processes that the development stack, the tests and the benchmarks start and stop the same way.

    free_port()                            a free TCP port on 127.0.0.1
    stop(process)                          SIGTERM, then SIGKILL if it has not exited in time
    with Gunicorn(app, env) as url: …      an app under gunicorn with its production settings (deploy/)
    with Granian(env) as url: …            the OCSP data plane as deploy/granian-ocsp.sh starts it
    with OcspCacheNginx(dir, upstream): …  nginx with docs/operators.md's cache block for OCSP GETs in front of it
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen | None, timeout: float = 20) -> None:
    """Ask a child to stop (SIGTERM) and wait; kill it if it is still there after `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def production_settings(app: str) -> list[str]:
    """`-c deploy/gunicorn-<service>.conf.py` for "deploy.composition:<service>_app()" (or another module of the
    service's package, "<service>.app:create_app()"), when that file exists."""
    module, _, factory = app.partition(":")
    service = factory.removesuffix("_app()") if module == "deploy.composition" else module.split(".", 1)[0]
    config = ROOT / "deploy" / f"gunicorn-{service}.conf.py"
    return ["-c", str(config)] if config.exists() else []


class Gunicorn:
    """`with Gunicorn("deploy.composition:revocation_app()", env) as url:` — the app under gunicorn on a free loopback
    port, with the service's production settings (deploy/) and `workers` workers, ready when /healthz answers."""

    def __init__(self, app: str, env: dict[str, str], workers: int = 2, extra_args: list[str] | None = None):
        self.app, self.env, self.workers = app, env, workers
        self.extra_args = extra_args or []
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        self.process = subprocess.Popen(self.command(), env=self.environment(), cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self.url
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or no worker has booted
                time.sleep(0.1)
        self.log.seek(0)
        output = self.log.read()[-2000:].decode(errors="replace")
        self.__exit__()
        raise RuntimeError(f"{self.app} did not come up:\n{output}")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", *production_settings(self.app), "-w", str(self.workers),
                "-b", f"127.0.0.1:{self.port}", *self.extra_args, self.app]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), **self.env}

    def __exit__(self, *exc) -> None:
        stop(self.process)
        self.process = None
        self.log.close()


class Granian(Gunicorn):
    """`with Granian(env) as url:` — the OCSP data plane started as an operator starts it, deploy/granian-ocsp.sh
    (deploy.composition:ocsp_app under granian with its production settings), with `workers` workers on a free
    loopback port; ready when /healthz answers. `extra_args` go to granian."""

    SCRIPT = ROOT / "deploy" / "granian-ocsp.sh"

    def __init__(self, env: dict[str, str], workers: int = 2, extra_args: list[str] | None = None):
        super().__init__("deploy.composition:ocsp_app", env, workers, extra_args)

    def command(self) -> list[str]:
        return ["sh", str(self.SCRIPT), "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PYTHON": sys.executable, "OCSP_WORKERS": str(self.workers)}


class OcspCacheNginx:
    """`with OcspCacheNginx(prefix, upstream) as url:` — Debian's nginx running docs/operators.md's block for an HTTP
    cache in front of OCSP GETs, as written there, with only its listen port, upstream and cache directory put in
    (files under `prefix`). `.process` is nginx's master; ready when a GET through it is answered."""

    NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
    TITLE = "# nginx: OCSP GETs cached"
    UPSTREAM, CACHE = "http://127.0.0.1:8083", "/var/cache/nginx/ocsp"  # as docs/operators.md writes them

    def __init__(self, prefix: Path, upstream: str, worker_processes: int | str = 1):
        self.prefix, self.upstream, self.workers = prefix, upstream, worker_processes
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @classmethod
    def documented_block(cls) -> str:
        text = (ROOT / "docs" / "operators.md").read_text()
        found = [block for block in re.findall(r"```nginx\n(.*?)```", text, re.DOTALL) if block.startswith(cls.TITLE)]
        if len(found) != 1:
            raise RuntimeError("docs/operators.md must hold the nginx block for OCSP GETs exactly once")
        return found[0]

    def cached_files(self) -> int:
        return sum(1 for path in (self.prefix / "cache").rglob("*") if path.is_file())

    def __enter__(self) -> str:
        prefix = self.prefix
        block = (self.documented_block().replace(self.UPSTREAM, self.upstream)
                 .replace(self.CACHE, str(prefix / "cache"))
                 .replace("server {\n", f"server {{\n    listen 127.0.0.1:{self.port};\n", 1))
        prefix.mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        # As root nginx would hand its workers to `nobody`, who cannot write under a private temporary directory.
        conf.write_text(("user root;\n" if os.geteuid() == 0 else "") + f"""
worker_processes {self.workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{block}
}}
""")
        self.process = subprocess.Popen(
            [self.NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/ocsp/MAA", timeout=5)
                return url
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"nginx did not come up:\n{(prefix / 'error.log').read_text()}") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        stop(self.process)
        self.process = None
