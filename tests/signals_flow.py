"""Helpers of the signals tests and bench: a loopback SET receiver, an `ssf` access token, resident-register
events, and the signals worker as a thread or as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from flask import Flask, request

from devstack.http import LiveServer
from revocation.domain.events import parse_event

ROOT = Path(__file__).resolve().parents[1]


class Receiver:
    """A push receiver on loopback: keeps every body it accepted, in order; `answer` sets its HTTP status (a
    receiver that is down answers 503); `error` makes it refuse with an RFC 8935 error body."""

    def __init__(self):
        self.received: list[tuple[str, str, float]] = []  # (path, body, arrival time)
        self.answer = 202
        self.error: str | None = None
        self.lock = threading.Lock()
        app = Flask(__name__)

        @app.post("/<path:path>")
        def take(path):
            if self.error:
                return {"err": self.error, "description": "refused by the test"}, 400
            if self.answer >= 300:
                return "", self.answer
            body = request.form["logout_token"] if path.startswith("bcl") else request.get_data(as_text=True)
            with self.lock:
                self.received.append((path, body, time.time()))
            return "", 200 if path.startswith("bcl") else 202

        self.live = LiveServer(app)

    def __enter__(self):
        self.live.__enter__()
        self.url = self.live.url
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)

    def bodies(self, path: str) -> list[str]:
        with self.lock:
            return [body for p, body, _ in self.received if p == path]

    def wait_for(self, path: str, count: int, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.bodies(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.bodies(path))} of {count} tokens arrived in {timeout} s")


def ssf_token(idp_url: str, client_id: str, secret: str) -> str:
    """An access token with the `ssf` scope, by client_credentials with client_secret_basic."""
    answer = requests.post(f"{idp_url}/token", data={"grant_type": "client_credentials", "scope": "ssf"},
                           auth=(client_id, secret), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def card_event(event_type: str, holder: str, card_id: str, event_id: str, occurred_at: str):
    return parse_event({"event_id": event_id, "type": event_type, "holder": holder, "card_id": card_id,
                        "occurred_at": occurred_at, "source": "test"})


def holder_event(event_type: str, holder: str, event_id: str, occurred_at: str):
    return parse_event({"event_id": event_id, "type": event_type, "holder": holder, "occurred_at": occurred_at,
                        "source": "test"})


class WorkerThread:
    """The signals worker in this process (run_worker), stopped at exit."""

    def __init__(self, signals):
        from idp.signals.worker import run_worker

        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_worker, args=(signals, self.stop), kwargs={"block_ms": 50},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def worker_process(env: dict) -> subprocess.Popen:
    """`python -m idp signals run` as its own process, with the IdP's environment."""
    return subprocess.Popen([sys.executable, "-m", "idp", "signals", "run"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
