"""docs/examples/login.mjs, run as written with openid-client 6 (installed by npm from tests/node/package-lock.json),
logs a person in with the virtual card against the running IdP and revocation service — and refuses an ID token
whose signature the issuer's JWKS does not verify, as docs/relying-parties.md §6 says it does."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, RSAKey

from tests.idp_flow import Browser, bridge_login

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "login.mjs"
NODE_DIR = ROOT / "tests" / "node"  # package.json + package-lock.json pin openid-client; node_modules is ignored
REDIRECT = "https://shop.example.jp/callback"


@pytest.fixture(scope="session")
def node(tmp_path_factory) -> str:
    """The node binary, with openid-client installed from the lock file (npm ci, cache under the repo)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are required to run docs/examples/login.mjs (Node.js 20 with npm)")
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/openid-client"]["version"]
    installed = NODE_DIR / "node_modules" / "openid-client" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        result = subprocess.run([npm, "ci", "--cache", str(ROOT / ".npm-cache"), "--no-audit", "--no-fund"],
                                cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"npm ci failed:\n{result.stderr[-2000:]}"
    return node


class ExampleRun:
    """The example as a child process: its stdout read line by line from a thread, with a bounded wait."""

    def __init__(self, node: str, directory: Path, env: dict[str, str], example: Path = EXAMPLE):
        # ESM resolves `openid-client` next to the script, so the script runs from a directory that sees the
        # installed node_modules; it is the example's exact bytes (docs/examples/login.mjs, or fapi2-login.mjs).
        script = directory / example.name
        shutil.copyfile(example, script)
        (directory / "node_modules").symlink_to(NODE_DIR / "node_modules", target_is_directory=True)
        assert script.read_bytes() == example.read_bytes()
        self.process = subprocess.Popen([node, str(script)], cwd=directory, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def authorization_url(self, timeout: float = 60) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"the example stopped: {self.process.stderr.read()[-2000:]}")
            if line.startswith("http"):
                return line.strip()

    def answer(self, callback: str, timeout: float = 60) -> tuple[int, str, str]:
        self.process.stdin.write(callback + "\n")
        self.process.stdin.flush()
        self.process.stdin.close()
        code = self.process.wait(timeout=timeout)
        out = []
        while (line := self.lines.get(timeout=timeout)) is not None:
            out.append(line)
        return code, "".join(out), self.process.stderr.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def example(node, idp_service, tmp_path):
    client, secret = idp_service.services.clients.add("Node Shop", [REDIRECT])
    env = {"PATH": os.environ["PATH"], "ISSUER": idp_service.url, "CLIENT_ID": client.client_id,
           "CLIENT_SECRET": secret, "REDIRECT_URI": REDIRECT}
    run = ExampleRun(node, tmp_path, env)
    yield run
    run.stop()


def log_in(idp_service, card, url: str) -> str:
    browser = Browser(idp_service.url)
    result = bridge_login(browser.start(url), card)
    assert result.returncode == 0, result.stderr
    final = browser.finish()
    assert final.status_code == 302 and final.headers["Location"].startswith(REDIRECT + "?")
    return final.headers["Location"]


def test_the_node_example_logs_a_person_in_as_written(idp_service, example, make_card):
    card = make_card()
    idp_service.register_card(card)
    callback = log_in(idp_service, card, example.authorization_url())
    code, out, err = example.answer(callback)
    assert code == 0, err
    assert "Logged in. Pairwise subject for this website: " in out and "(acr aal3," in out
    sub = out.split("Pairwise subject for this website: ")[1].split()[0]
    assert len(sub) == 43


def test_the_node_example_refuses_an_id_token_the_jwks_does_not_verify(idp_service, example, make_card,
                                                                        monkeypatch):
    card = make_card()
    idp_service.register_card(card)
    callback = log_in(idp_service, card, example.authorization_url())
    real = idp_service.services.signing_keys.jwks()
    impostors = {"keys": [
        {**(RSAKey.generate_key(2048) if k["kty"] == "RSA" else ECKey.generate_key("P-256")).as_dict(private=False),
         "kid": k["kid"], "alg": k["alg"], "use": "sig"} for k in real["keys"]]}
    # The IdP still signs with its real key; only the published JWKS is someone else's.
    monkeypatch.setattr(idp_service.services.signing_keys, "jwks", lambda *args, **kwargs: impostors)
    code, out, err = example.answer(callback)
    assert code != 0 and "Logged in" not in out
    assert "signature" in err.lower(), err[-2000:]
