"""FAPI 2.0 over real HTTP, Redis and the virtual card: pushed authorization requests (RFC 9126), DPoP (RFC 9449)
and the fapi2 client profile (idp/oidc/fapi.py).

docs/examples/fapi2-login.mjs runs as written with openid-client 6 — an independent implementation of PAR, DPoP
and private_key_jwt — as a FAPI 2.0 client doing a full card login, reading userinfo and refreshing with DPoP.
Then each refusal the profile and the RFCs name, with requests and joserfc as the client: a request without PAR
for a PAR-only client, a reused, expired or foreign request_uri, DPoP proofs with the wrong htm or htu, a stale
iat, a replayed jti, a missing nonce, a token presented without its proof or as Bearer, a proof by another key
than the bound one, a bad ath, an RS256 client assertion and a client secret for a FAPI client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time

import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from idp.keys import pushed_request
from idp.oidc.tokens import AuthorizationCode, token_digest
from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard
from tests.idp_flow import Browser, bridge_login, query_of
from tests.test_node_example import ROOT, ExampleRun, node  # noqa: F401 - `node` is a fixture

EXAMPLE = ROOT / "docs" / "examples" / "fapi2-login.mjs"
REDIRECT = "https://bank.example.jp/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _s256(value: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()).rstrip(b"=").decode()


class FapiClient:
    """A FAPI 2.0 relying party written here: its registration, its private_key_jwt key and a DPoP key."""

    def __init__(self, idp, key=None, **registration):
        self.idp = idp
        self.key = key or ECKey.generate_key("P-256", private=True, parameters={"kid": "fapi-1"})
        self.client, _ = idp.services.clients.add("Bank", [REDIRECT], jwks={"keys": [self.key.as_dict(private=False)]},
                                                  **({"profile": "fapi2"} | registration))
        self.client_id = self.client.client_id
        self.dpop_key = ECKey.generate_key("P-256", private=True)
        self.nonce: str | None = None

    def assertion(self, alg: str | None = None) -> dict:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.idp.url, "iat": now, "exp": now + 60,
                  "jti": secrets.token_urlsafe(16)}
        alg = alg or ("ES256" if isinstance(self.key, ECKey) else "PS256")
        return {"client_assertion_type": ASSERTION_TYPE,
                "client_assertion": jwt.encode({"alg": alg, "kid": self.key.kid}, claims, self.key,
                                               algorithms=[alg])}

    def proof(self, method: str, path: str, *, key=None, htu: str | None = None, iat: int | None = None,
              jti: str | None = None, access_token: str | None = None, nonce: str | None = None,
              typ: str = "dpop+jwt", alg: str = "ES256") -> str:
        key = key or self.dpop_key
        claims = {"jti": jti or secrets.token_urlsafe(16), "htm": method, "htu": htu or f"{self.idp.url}{path}",
                  "iat": int(time.time()) if iat is None else iat}
        if nonce or self.nonce:
            claims["nonce"] = nonce or self.nonce
        if access_token is not None:
            claims["ath"] = _s256(access_token)
        header = {"typ": typ, "alg": alg, "jwk": key.as_dict(private=False)}
        return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])

    def authorization_params(self, **extra) -> tuple[dict, str]:
        verifier = secrets.token_urlsafe(48)
        return {"client_id": self.client_id, "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid",
                "state": secrets.token_urlsafe(12), "nonce": secrets.token_urlsafe(12),
                "code_challenge": _s256(verifier), "code_challenge_method": "S256", **extra}, verifier

    def push(self, params: dict, dpop: bool = True, auth: dict | None = None) -> requests.Response:
        headers = {"DPoP": self.proof("POST", "/par")} if dpop else {}
        auth = auth if auth is not None else self.assertion()
        return requests.post(f"{self.idp.url}/par", data={**params, **auth}, headers=headers, timeout=30)

    def token(self, form: dict, proof: str | None = "make", auth: dict | None = None) -> requests.Response:
        headers = {}
        if proof == "make":
            proof = self.proof("POST", "/token")
        if proof is not None:
            headers["DPoP"] = proof
        return requests.post(f"{self.idp.url}/token", data={**form, **(auth if auth is not None else self.assertion())},
                             headers=headers, timeout=30)

    def fetch_nonce(self) -> str:
        """The server's nonce, as a client learns it: a token request whose proof has none."""
        self.nonce = None
        answer = self.token({"grant_type": "refresh_token", "refresh_token": "x"})
        assert answer.status_code == 400 and answer.json()["error"] == "use_dpop_nonce", answer.text
        self.nonce = answer.headers["DPoP-Nonce"]
        return self.nonce


class Codes:
    """Codes for a registered card's account, stored as the authorization endpoint stores them after a login."""

    def __init__(self, idp, card_path):
        idp.register_card(card_path)
        self.idp = idp
        services = idp.services
        serial = parse_certificate(VirtualCard.load(card_path).certificate(CertificateKind.AUTH)).serial
        self.account_id = services.mykey.resolve("auth", serial, services.clock()).account_id
        self.certificate = services.seal_certificate("auth", serial, "card")

    def code(self, client_id: str, dpop_jkt: str | None = None) -> dict:
        code, verifier = secrets.token_urlsafe(36), secrets.token_urlsafe(48)
        self.idp.services.tokens.save_code(AuthorizationCode(
            code_digest=token_digest(code), client_id=client_id, redirect_uri=REDIRECT, scope="openid",
            nonce=secrets.token_urlsafe(16), code_challenge=_s256(verifier), code_challenge_method="S256",
            account_id=self.account_id, auth_time=int(time.time()), certificate=self.certificate,
            dpop_jkt=dpop_jkt))
        return {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}


@pytest.fixture
def bank(idp_service):
    return FapiClient(idp_service)


@pytest.fixture
def codes(idp_service, make_card):
    return Codes(idp_service, make_card())


@pytest.fixture
def tokens(bank, codes):
    """A DPoP-bound token response for the bank (nonce fetched first, as a client does on use_dpop_nonce)."""
    bank.fetch_nonce()
    answer = bank.token(codes.code(bank.client_id))
    assert answer.status_code == 200, answer.text
    return answer.json()


def challenge(response: requests.Response) -> str:
    return response.headers.get("WWW-Authenticate", "")


# --- the independent client: openid-client 6 running docs/examples/fapi2-login.mjs ------------------------------

def card_login(idp_service, card, url: str) -> str:
    browser = Browser(idp_service.url)
    result = bridge_login(browser.start(url), card)
    assert result.returncode == 0, result.stderr
    final = browser.finish()
    assert final.status_code == 302 and final.headers["Location"].startswith(REDIRECT + "?"), final.text
    return final.headers["Location"]


@pytest.mark.parametrize("kind", ["ES256", "PS256"])
def test_openid_client_logs_in_as_a_fapi2_client(node, idp_service, make_card, tmp_path, kind):  # noqa: F811
    key = (ECKey.generate_key("P-256", private=True, parameters={"kid": "bank-1"}) if kind == "ES256"
           else RSAKey.generate_key(2048, private=True, parameters={"kid": "bank-1"}))
    bank = FapiClient(idp_service, key)
    key_file = tmp_path / "client-private.jwk.json"
    key_file.write_text(json.dumps(key.as_dict(private=True)))
    card = make_card()
    idp_service.register_card(card)
    env = {"PATH": os.environ["PATH"], "ISSUER": idp_service.url, "CLIENT_ID": bank.client_id,
           "CLIENT_KEY_FILE": str(key_file), "REDIRECT_URI": REDIRECT}
    run = ExampleRun(node, tmp_path, env, EXAMPLE)
    try:
        url = run.authorization_url()
        # The browser sees only client_id and request_uri: everything else was pushed.
        assert set(query_of(url)) == {"client_id", "request_uri"}
        assert query_of(url)["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
        callback = card_login(idp_service, card, url)
        assert query_of(callback)["iss"] == idp_service.url
        code, out, err = run.answer(callback)
    finally:
        run.stop()
    assert code == 0, err[-3000:]
    assert "token_type dpop" in out.lower(), out
    sub = out.split("Pairwise subject for this website: ")[1].split()[0]
    assert f"userinfo sub {sub}" in out
    assert "new refresh token no" in out  # FAPI: the refresh token is not rotated
    # The request_uri the login used is spent.
    again = requests.get(url, allow_redirects=False, timeout=30)
    assert again.status_code == 400 and 'data-code="invalid_request_uri"' in again.text


# --- discovery and registration ----------------------------------------------------------------------------------

def test_par_can_be_required_of_every_client(idp_service, monkeypatch):
    import dataclasses

    services = idp_service.services
    monkeypatch.setattr(services, "config", dataclasses.replace(services.config, require_par=True))
    meta = requests.get(f"{idp_service.url}/.well-known/openid-configuration", timeout=30).json()
    assert meta["require_pushed_authorization_requests"] is True
    plain = FapiClient(idp_service, RSAKey.generate_key(2048, private=True, parameters={"kid": "p"}), profile=None)
    params, _ = plain.authorization_params()
    answer = requests.get(f"{idp_service.url}/authorize", params=params, allow_redirects=False, timeout=30)
    assert answer.status_code == 400 and 'data-code="invalid_request"' in answer.text
    pushed = requests.post(f"{idp_service.url}/par", data={**params, **plain.assertion("RS256")}, timeout=30)
    assert pushed.status_code == 201, pushed.text
    opened = _authorize(idp_service, plain.client_id, pushed.json()["request_uri"])
    assert opened.status_code == 302 and opened.headers["Location"] == "/login"


def test_discovery_names_par_and_dpop(idp_service):
    meta = requests.get(f"{idp_service.url}/.well-known/openid-configuration", timeout=30).json()
    assert meta["pushed_authorization_request_endpoint"] == f"{idp_service.url}/par"
    assert meta["require_pushed_authorization_requests"] is False
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    assert "HS256" not in meta["dpop_signing_alg_values_supported"]
    assert meta["authorization_response_iss_parameter_supported"] is True


def test_the_clients_cli_registers_a_fapi2_client(redis_server, redis_client, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "MYKEY_VAR": str(tmp_path)}

    def idp(*args):
        return subprocess.run([sys.executable, "-m", "idp", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=60, cwd=ROOT)

    jwks = tmp_path / "bank.jwks.json"
    jwks.write_text(json.dumps({"keys": [ECKey.generate_key("P-256", parameters={"kid": "b1"}).as_dict()]}))
    added = idp("clients", "add", "--profile", "fapi2", "--name", "Bank", "--redirect-uri", REDIRECT, "--jwks", jwks,
                "--json")
    assert added.returncode == 0, added.stderr
    registered = json.loads(added.stdout)
    assert registered["token_endpoint_auth_method"] == "private_key_jwt" and registered["client_secret"] is None
    assert registered["profile"] == "fapi2" and registered["require_pushed_authorization_requests"] is True
    assert registered["dpop_bound_access_tokens"] is True
    assert "profile=fapi2" in idp("clients", "list").stdout
    refused = idp("clients", "add", "--profile", "fapi2", "--name", "Bank", "--redirect-uri", REDIRECT)
    assert refused.returncode == 1 and "invalid_client_metadata" in refused.stderr and "Traceback" not in refused.stderr
    assert "private_key_jwt" in refused.stderr


def test_a_fapi2_client_cannot_be_registered_with_a_secret_or_only_a_weak_key(idp_service):
    from idp.oidc.clients import ClientRegistrationError

    registry = idp_service.services.clients
    with pytest.raises(ClientRegistrationError) as refused:
        registry.add("Bank", [REDIRECT], profile="fapi2")
    assert refused.value.code == "invalid_client_metadata" and "private_key_jwt" in refused.value.message
    okp = {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
    with pytest.raises(ClientRegistrationError) as refused:
        registry.add("Bank", [REDIRECT], jwks={"keys": [okp]}, profile="fapi2")
    assert "PS256 or ES256" in refused.value.message


# --- PAR ---------------------------------------------------------------------------------------------------------

def test_a_par_only_client_is_refused_without_par(idp_service, bank):
    params, _ = bank.authorization_params()
    answer = requests.get(f"{idp_service.url}/authorize", params=params, allow_redirects=False, timeout=30)
    assert answer.status_code == 400  # the error page: nothing of an unpushed request is trusted for a redirect
    assert 'data-code="invalid_request"' in answer.text


def test_a_pushed_request_gives_a_short_lived_request_uri(idp_service, bank):
    params, _ = bank.authorization_params()
    answer = bank.push(params)
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:") and 0 < body["expires_in"] <= 60


def test_par_refusals(idp_service, bank):
    params, _ = bank.authorization_params()
    # Not authenticated: 401 invalid_client.
    answer = bank.push(params, auth={})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    # A request_uri must not be pushed (RFC 9126 §2.1).
    answer = bank.push({**params, "request_uri": "urn:ietf:params:oauth:request_uri:x"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    # The authorization endpoint's own rules apply at push: PKCE, with a JSON answer rather than a redirect.
    answer = bank.push({k: v for k, v in params.items() if k != "code_challenge"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert "Location" not in answer.headers
    # An unregistered redirect_uri, or none: it must be in the pushed request (FAPI 2.0).
    answer = bank.push({**params, "redirect_uri": "https://evil.example/cb"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    answer = bank.push({k: v for k, v in params.items() if k != "redirect_uri"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    # Another client's client_id.
    answer = bank.push({**params, "client_id": "rp_someone_else"})
    assert answer.status_code in (400, 401)
    # dpop_jkt naming another key than the DPoP proof's (RFC 9449 §10.1).
    other = ECKey.generate_key("P-256").thumbprint()
    answer = bank.push({**params, "dpop_jkt": other})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_dpop_proof"


def _authorize(idp_service, client_id: str, request_uri: str) -> requests.Response:
    return requests.get(f"{idp_service.url}/authorize", params={"client_id": client_id, "request_uri": request_uri},
                        allow_redirects=False, timeout=30)


def test_an_expired_or_foreign_request_uri_is_refused(idp_service, bank, redis_client):
    params, _ = bank.authorization_params()
    request_uri = bank.push(params).json()["request_uri"]
    # Another client cannot use it.
    other = FapiClient(idp_service)
    assert 'data-code="invalid_request_uri"' in _authorize(idp_service, other.client_id, request_uri).text
    # Its lifetime runs out in Redis (IDP_PAR_TTL, at most 60 s): expire it now rather than wait.
    redis_client.pexpire(pushed_request(hashlib.sha256(request_uri.encode()).hexdigest()), 1)
    time.sleep(0.05)
    answer = _authorize(idp_service, bank.client_id, request_uri)
    assert answer.status_code == 400 and 'data-code="invalid_request_uri"' in answer.text


def test_a_request_uri_is_used_once(idp_service, bank, make_card):
    card = make_card()
    idp_service.register_card(card)
    params, _ = bank.authorization_params()
    request_uri = bank.push(params).json()["request_uri"]
    url = f"/authorize?client_id={bank.client_id}&request_uri={request_uri}"
    callback = card_login(idp_service, card, url)
    assert query_of(callback)["state"] == params["state"] and "code" in query_of(callback)
    answer = _authorize(idp_service, bank.client_id, request_uri)
    assert answer.status_code == 400 and 'data-code="invalid_request_uri"' in answer.text


# --- DPoP at the token endpoint ----------------------------------------------------------------------------------

def test_a_token_request_needs_a_server_nonce(bank, codes):
    form = codes.code(bank.client_id)
    answer = bank.token(form)
    assert answer.status_code == 400 and answer.json()["error"] == "use_dpop_nonce"
    nonce = answer.headers["DPoP-Nonce"]
    assert bank.token(form, proof=bank.proof("POST", "/token", nonce="made-up")).json()["error"] == "use_dpop_nonce"
    bank.nonce = nonce
    answer = bank.token(form)  # the same code: a refused proof spent nothing
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "DPoP" and answer.headers["DPoP-Nonce"]


@pytest.mark.parametrize("fault", ["htm", "htu", "htu-host", "stale-iat", "future-iat", "typ", "no-proof",
                                   "two-proofs", "not-a-jwt"])
def test_token_request_proof_refusals(bank, codes, fault):
    bank.fetch_nonce()
    form = codes.code(bank.client_id)
    proof = {
        "htm": lambda: bank.proof("GET", "/token"),
        "htu": lambda: bank.proof("POST", "/token", htu=f"{bank.idp.url}/userinfo"),
        "htu-host": lambda: bank.proof("POST", "/token", htu="https://elsewhere.example/token"),
        "stale-iat": lambda: bank.proof("POST", "/token", iat=int(time.time()) - 600),
        "future-iat": lambda: bank.proof("POST", "/token", iat=int(time.time()) + 600),
        "typ": lambda: bank.proof("POST", "/token", typ="JWT"),
        "no-proof": lambda: None,
        "two-proofs": lambda: f"{bank.proof('POST', '/token')}, {bank.proof('POST', '/token')}",
        "not-a-jwt": lambda: "[[[[[[[[.e30.x",
    }[fault]()
    answer = bank.token(form, proof=proof)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_dpop_proof", answer.text
    assert answer.json()["error_description"]
    assert bank.token(form).status_code == 200  # nothing was spent by the refusal


def test_htu_is_compared_normalised(bank, codes):
    bank.fetch_nonce()
    upper = bank.idp.url.replace("http://", "HTTP://") + "/token?x=1#f"
    assert bank.token(codes.code(bank.client_id), proof=bank.proof("POST", "/token", htu=upper)).status_code == 200


@pytest.mark.parametrize("alg", ["PS256", "Ed25519", "EdDSA", "RS256"])
def test_proofs_with_rsa_and_ed25519_keys(bank, codes, alg):
    from joserfc.jwk import OKPKey

    key = (OKPKey.generate_key("Ed25519", private=True) if alg.startswith("Ed")
           else RSAKey.generate_key(2048, private=True))
    bank.fetch_nonce()
    answer = bank.token(codes.code(bank.client_id), proof=bank.proof("POST", "/token", key=key, alg=alg))
    if alg == "RS256":  # discovery lists it, but a FAPI 2.0 client may not use it
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_dpop_proof"
        return
    assert answer.status_code == 200, answer.text
    access = answer.json()["access_token"]
    info = _userinfo(bank, "DPoP", access, bank.proof("GET", "/userinfo", key=key, alg=alg, access_token=access))
    assert info.status_code == 200, info.text


def test_a_replayed_proof_is_refused(bank, codes):
    bank.fetch_nonce()
    proof = bank.proof("POST", "/token")
    assert bank.token(codes.code(bank.client_id), proof=proof).status_code == 200
    answer = bank.token(codes.code(bank.client_id), proof=proof)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_dpop_proof"
    assert "used before" in answer.json()["error_description"]


def test_a_proof_is_spent_on_every_road(idp_service, bank, codes):
    """On the short road the exchange script writes the proof's jti with the code; a request refused before the
    script (here: a bad client assertion) still spends it; the long road (client_secret_basic) and the refresh
    grant write it on their own."""
    bank.fetch_nonce()
    proof = bank.proof("POST", "/token")
    form = codes.code(bank.client_id)
    forged = {**bank.assertion(), "client_assertion": bank.assertion()["client_assertion"][:-4] + "AAAA"}
    assert bank.token(form, proof=proof, auth=forged).json()["error"] == "invalid_client"
    answer = bank.token(form, proof=proof)
    assert answer.status_code == 400 and "used before" in answer.json()["error_description"]

    shop, secret = idp_service.services.clients.add("Shop", [REDIRECT])
    proof = bank.proof("POST", "/token")
    sent = [requests.post(f"{idp_service.url}/token", data=codes.code(shop.client_id), auth=(shop.client_id, secret),
                          headers={"DPoP": proof}, timeout=30) for _ in range(2)]
    assert sent[0].status_code == 200 and sent[0].json()["token_type"] == "DPoP", sent[0].text
    assert sent[1].status_code == 400 and "used before" in sent[1].json()["error_description"]


def test_a_code_bound_by_dpop_jkt_needs_that_key(bank, codes):
    bank.fetch_nonce()
    form = codes.code(bank.client_id, dpop_jkt=ECKey.generate_key("P-256").thumbprint())
    answer = bank.token(form)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_dpop_proof"


def test_fapi_client_assertion_refusals(idp_service, codes):
    # RS256 is refused for a FAPI 2.0 client, even with its own registered RSA key.
    rsa = FapiClient(idp_service, RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa-1"}))
    answer = rsa.token(codes.code(rsa.client_id), proof=None, auth=rsa.assertion("RS256"))
    # RFC 6749 §5.2: 401 when the client authenticated with the Authorization header, else 400 may be used.
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"
    assert "PS256 or ES256" in answer.json()["error_description"]
    # A client secret is refused: a FAPI client has none.
    answer = requests.post(f"{idp_service.url}/token", data=codes.code(rsa.client_id),
                           auth=(rsa.client_id, "guessed-secret"), timeout=30)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_a_fapi_client_must_send_a_proof(bank, codes):
    answer = bank.token(codes.code(bank.client_id), proof=None)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_dpop_proof"
    assert "sender-constrained" in answer.json()["error_description"]


# --- DPoP at userinfo, and the bound refresh token ---------------------------------------------------------------

def _userinfo(bank, scheme: str, token: str, proof: str | None) -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return requests.get(f"{bank.idp.url}/userinfo", headers=headers, timeout=30)


def test_userinfo_with_a_bound_token(bank, tokens):
    access = tokens["access_token"]
    answer = _userinfo(bank, "DPoP", access, bank.proof("GET", "/userinfo", access_token=access))
    assert answer.status_code == 200 and answer.json()["sub"]


@pytest.mark.parametrize("fault, error", [
    ("no-proof", "invalid_dpop_proof"), ("bearer", "invalid_token"), ("other-key", "invalid_token"),
    ("bad-ath", "invalid_dpop_proof"), ("no-ath", "invalid_dpop_proof"), ("htm", "invalid_dpop_proof")])
def test_userinfo_refusals(bank, tokens, fault, error):
    access = tokens["access_token"]
    scheme, proof = "DPoP", {
        "no-proof": lambda: None,
        "bearer": lambda: None,
        "other-key": lambda: bank.proof("GET", "/userinfo", access_token=access,
                                        key=ECKey.generate_key("P-256", private=True)),
        "bad-ath": lambda: bank.proof("GET", "/userinfo", access_token=access + "x"),
        "no-ath": lambda: bank.proof("GET", "/userinfo"),
        "htm": lambda: bank.proof("POST", "/userinfo", access_token=access),
    }[fault]()
    if fault == "bearer":
        scheme = "Bearer"
    answer = _userinfo(bank, scheme, access, proof)
    assert answer.status_code == 401, answer.text
    assert challenge(answer).startswith("DPoP ") and f'error="{error}"' in challenge(answer)
    assert access not in challenge(answer)


def test_the_bound_refresh_token_is_not_rotated_and_needs_its_key(bank, tokens):
    refresh = tokens["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    for _ in range(2):  # the same refresh token, twice: no rotation for a FAPI 2.0 client
        answer = bank.token(form)
        assert answer.status_code == 200, answer.text
        assert answer.json()["token_type"] == "DPoP" and "refresh_token" not in answer.json()
    other = ECKey.generate_key("P-256", private=True)
    answer = bank.token(form, proof=bank.proof("POST", "/token", key=other))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_dpop_proof"
    assert "bound to another DPoP key" in answer.json()["error_description"]


def test_bearer_clients_are_unchanged(idp_service, codes):
    """A client that sends no proof still gets Bearer tokens, and userinfo takes them as before."""
    key = RSAKey.generate_key(2048, private=True, parameters={"kid": "plain-1"})
    plain = FapiClient(idp_service, key, profile=None)
    answer = plain.token(codes.code(plain.client_id), proof=None, auth=plain.assertion("RS256"))
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
    access = answer.json()["access_token"]
    assert _userinfo(plain, "Bearer", access, None).status_code == 200
    # A Bearer token sent with the DPoP scheme is not taken for a bound one.
    refused = _userinfo(plain, "DPoP", access, plain.proof("GET", "/userinfo", access_token=access))
    assert refused.status_code == 401 and 'error="invalid_token"' in challenge(refused)
