"""The bridge's HTTP client (nfc_bridge/login.py) against a hostile or broken login service: a tiny loopback
server answers with garbage, deep or huge JSON, lies about lengths, or writes escape sequences into its error
message. Every case ends in one plain sentence and exit status 1, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from nfc_bridge.login import LoginFailed, fetch_login

ROOT = Path(__file__).resolve().parents[1]
HANDLE = "h" * 32


class CannedServer:
    """Loopback TCP server: for each connection, reads one request and writes whatever `answer(method, path)`
    returns, as raw bytes, then closes. At most `limit` connections."""

    def __init__(self, answer: Callable[[str, str], bytes], limit: int = 8):
        self.answer = answer
        self.limit = limit
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CannedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would leave waiting
        except OSError:
            pass
        self.socket.close()
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        for _ in range(self.limit):
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                head, _, body = request.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                               if line.lower().startswith("content-length:")), 0)
                while len(body) < length:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                method, path = [*lines[0].split(" "), "", ""][:2]
                try:
                    connection.sendall(self.answer(method, path))
                except OSError:
                    pass


def http(status: str, body: bytes, content_type: str = "application/json", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}"
            f"Connection: close\r\n\r\n").encode() + body


def login_request(base: str) -> bytes:
    return json.dumps({"rp_name": "Example Shop", "short_code": "1234", "origin": base, "challenge": "A" * 43,
                       "signing_challenge": None, "share": [], "expires_at": "2030-01-01T00:00:00+00:00",
                       "submit_url": f"{base}/api/login/submit", "submit_token": "t" * 43}).encode()


def bridge_login(url: str, card: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nfc_bridge", "login", url, "--reader", "virtual", "--card",
                           str(card), "--pin-stdin"], input="1234\n", capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


def one_sentence(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


FETCH_ANSWERS = {
    "not_http": b"SSH-2.0-OpenSSH_9.6\r\n",
    "not_json": http("200 OK", b"<html>hello</html>", "text/html"),
    "deep_json": http("200 OK", b"[" * 50_000 + b"]" * 50_000),
    "huge_body": http("200 OK", b'{"rp_name": "' + b"x" * (2 << 20) + b'"}'),
    "nan": http("200 OK", b'{"rp_name": NaN}'),
    "array": http("200 OK", b"[1, 2, 3]"),
    "short_body": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"rp",
    "bad_header": b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n{}",
    "error_array": http("400 Bad Request", b"[]"),
    "error_deep": http("500 Internal Server Error", b"{" * 10_000),
    "error_html": http("502 Bad Gateway", b"<html>upstream</html>", "text/html"),
}


@pytest.mark.parametrize("case", sorted(FETCH_ANSWERS))
def test_a_broken_fetch_answer_is_one_sentence(card_file, case):
    with CannedServer(lambda method, path: FETCH_ANSWERS[case]) as server:
        line = one_sentence(bridge_login(f"{server.url}/api/login/{HANDLE}", card_file))
    assert line.startswith("Login failed (") and line.endswith(".")
    assert len(line) < 300


@pytest.mark.parametrize("case", sorted(FETCH_ANSWERS))
def test_fetch_login_raises_login_failed_in_process(case):
    with CannedServer(lambda method, path: FETCH_ANSWERS[case]) as server, pytest.raises(LoginFailed) as info:
        fetch_login(f"{server.url}/api/login/{HANDLE}")
    assert info.value.code in {"bad_login_answer", "idp_unreachable", "http_400", "http_500", "http_502"}


def test_an_error_message_cannot_write_to_the_terminal(card_file):
    hostile = json.dumps({"error": "proof_malformed\x1b[2J", "message": "\x1b]0;owned\x07Call +81-00 now" + "!" * 5000})
    with CannedServer(lambda method, path: http("400 Bad Request", hostile.encode())) as server:
        line = one_sentence(bridge_login(f"{server.url}/api/login/{HANDLE}", card_file))
    assert "\x1b" not in line and "\x07" not in line and len(line) < 400


@pytest.mark.parametrize("answer", [b"[]", b'"ok"', b"{" * 10_000, b"not json"])
def test_a_broken_submit_answer_is_one_sentence(card_file, answer):
    def serve(method: str, path: str) -> bytes:
        if method == "GET":
            return http("200 OK", login_request(server.url))
        return http("200 OK", answer)

    with CannedServer(serve) as server:
        line = one_sentence(bridge_login(f"{server.url}/api/login/{HANDLE}", card_file))
    assert line.startswith("Login failed (bad_login_answer)")


@pytest.mark.parametrize("change", [{"rp_name": "Shop\x1b[2J"}, {"rp_name": ""}, {"short_code": "12ab"},
                                    {"share": ["name", "\x1b[31mall"]}, {"share": "name"}])
def test_what_the_holder_is_shown_must_be_plain(change):
    def serve(method: str, path: str) -> bytes:
        return http("200 OK", json.dumps({**json.loads(login_request(server.url)), **change}).encode())

    with CannedServer(serve) as server, pytest.raises(LoginFailed) as info:
        fetch_login(f"{server.url}/api/login/{HANDLE}")
    assert info.value.code == "bad_login_answer"


def test_a_redirect_from_the_login_service_is_not_followed():
    # The login link names the service whose challenge the card signs; a hop to another address is refused.
    paths = []

    def answer(method, path):
        paths.append(path)
        return http("302 Found", b"", extra=f"Location: /elsewhere/{HANDLE}\r\n")

    with CannedServer(answer) as server, pytest.raises(LoginFailed) as info:
        fetch_login(f"{server.url}/api/login/{HANDLE}")
    assert info.value.code == "http_302" and paths == [f"/api/login/{HANDLE}"]
