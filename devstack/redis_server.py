"""A private redis-server process on a loopback port, for `make run` and for the test suite.

Production points `REDIS_URL` at its own server or cluster and never uses this.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from devstack.processes import free_port, stop


class RedisServer:
    """`with RedisServer(data_dir) as server: server.url` — started on enter, stopped on exit."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = False,
                 extra_args: list[str] | None = None):
        self.data_dir = Path(data_dir).resolve()  # redis-server changes into --dir before it opens the log
        self.port = port or free_port()
        self.persist = persist
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
            "--protected-mode", "yes", "--daemonize", "no", "--logfile", str(self.data_dir / "redis.log"),
        ]
        # Development state survives restarts through the append-only file; tests keep nothing.
        args += ["--appendonly", "yes", "--save", ""] if self.persist else ["--appendonly", "no", "--save", ""]
        args += self.extra_args
        # Its own session: a Ctrl-C in the terminal reaches only us, and we stop redis after everything using it.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start; see {self.data_dir / 'redis.log'}")
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not answer within its start timeout") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        stop(self.process, timeout=10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
