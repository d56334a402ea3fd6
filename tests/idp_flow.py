"""Walk the login flow as a browser and a cardholder would: a requests session for the browser, the real
`python -m nfc_bridge login` for the card side. Used by the IdP's end-to-end tests."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]


def bridge_login(handle_url: str, card: Path, pins: str = "1234\n", timeout: float = 60, extra: list[str] = ()):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nfc_bridge", "login", handle_url, "--reader", "virtual",
                           "--card", str(card), "--pin-stdin", *extra], input=pins, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


class Browser:
    def __init__(self, idp_url: str):
        self.idp = idp_url
        self.http = requests.Session()

    def get(self, url: str) -> requests.Response:
        return self.http.get(urljoin(self.idp, url), allow_redirects=False, timeout=30)

    def post(self, url: str, data: dict | None = None) -> requests.Response:
        return self.http.post(urljoin(self.idp, url), data=data or {}, allow_redirects=False, timeout=30)

    def start(self, authorize_url: str) -> str:
        """Open the RP's authorization URL; return the login page's handle URL."""
        response = self.get(authorize_url)
        assert response.status_code == 302, response.text
        assert response.headers["Location"] == "/login", response.headers["Location"]
        page = self.get("/login")
        assert page.status_code == 200
        return handle_url_of(page.text)

    def finish(self, approve: bool = True) -> requests.Response:
        """After the card answered: continue, consent if asked, and return the final redirect to the RP."""
        status = self.get("/login/status").json()
        assert status["state"] == "verified", status
        response = self.post("/login/continue")
        return self.follow(response, approve)

    def follow(self, response: requests.Response, approve: bool = True) -> requests.Response:
        for _ in range(6):
            if response.status_code == 200 and 'action="/consent"' in response.text:
                token = re.search(r'name="token" value="([^"]+)"', response.text).group(1)
                response = self.post("/consent", {"token": token, "decision": "approve" if approve else "deny"})
                continue
            location = response.headers.get("Location", "")
            if response.status_code == 302 and location.startswith(("/", self.idp)):
                response = self.get(location)
                continue
            return response
        raise AssertionError("too many redirects inside the IdP")


def handle_url_of(page: str) -> str:
    command = re.search(r'<pre id="command">([^<]+)</pre>', page).group(1)
    return html.unescape(command).split()[4]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
