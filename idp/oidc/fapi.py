"""The FAPI 2.0 Security Profile as a client profile: what a client registered with `--profile fapi2` may not do.

Banks, securities and payment companies integrate identity providers under FAPI 2.0. Registering a client with
`python -m idp clients add --profile fapi2` records `profile: fapi2`, `require_pushed_authorization_requests` and
`dpop_bound_access_tokens` with it, and from then on the IdP holds that client to the profile (FAPI 2.0 Security
Profile §5.3.2, §5.3.3, §5.4):

- registration: `private_key_jwt` only (a JWKS or a `jwks_uri`; a client secret is never issued), an inline JWKS
  must hold a key for PS256 or ES256 (RSA of at least 2048 bits, or EC P-256) — `check_registration`;
- authorization requests only through PAR (idp/oidc/par.py), with PKCE S256, `state`, `nonce` and a registered
  `redirect_uri` in the pushed request; `response_type=code` only (no implicit or hybrid flow, for every client);
  `iss` in every authorization response (RFC 9207, for every client); codes live 60 seconds (`code_ttl`);
- client assertions signed with PS256 or ES256 (RS256 refused, `invalid_client`), whose `aud` may be the
  issuer itself — `check_assertion_alg`;
- tokens sender-constrained with DPoP: a token request without a proof is refused (`invalid_dpop_proof`), proofs
  signed with PS256, ES256 or Ed25519, and the refresh token bound to the proof's key too — `check_token_proof`;
- refresh tokens not rotated (§5.3.2.1: rotation only where a lost response can be retried): a FAPI client's
  refresh token stays the same until it expires (`refresh_token_ttl`), each refresh answers with a new access
  token only, and a lost answer is simply asked again. It is bound to the DPoP key, so a copy is useless.

The same per-client settings are available without the profile (`--require-par`, `--dpop`), and PAR for every
client with IDP_REQUIRE_PAR=1.
"""

from __future__ import annotations

from flask import g

from idp.oidc import dpop

FAPI2 = "fapi2"
PROFILES = (FAPI2,)
ASSERTION_ALGS = ("PS256", "ES256")


def is_fapi(client) -> bool:
    return getattr(client, "profile", "") == FAPI2


def requires_dpop(client) -> bool:
    return bool(getattr(client, "dpop_bound_access_tokens", False)) or is_fapi(client)


def binds_refresh_token(client) -> bool:
    """Refresh tokens are bound to the DPoP key for clients that must use DPoP (every FAPI client). There are no
    public clients here (every client authenticates), the case RFC 9449 §5 makes binding mandatory for."""
    return requires_dpop(client)


def rotates_refresh_token(client) -> bool:
    return not is_fapi(client)


def check_registration(auth_method: str, jwks: dict | None) -> str | None:
    """Why a FAPI 2.0 registration is refused, or None."""
    if auth_method != "private_key_jwt":
        return "A FAPI 2.0 client authenticates with private_key_jwt: give --jwks or --jwks-uri (no client secret)."
    if jwks is not None and not any(_fits_fapi(key) for key in jwks.get("keys", [])):
        return "A FAPI 2.0 client's JWKS needs a key for PS256 or ES256 (RSA of 2048 bits or more, or EC P-256)."
    return None


def _fits_fapi(key: dict) -> bool:
    if key.get("kty") == "EC":
        return key.get("crv") == "P-256"
    if key.get("kty") == "RSA":
        modulus = key.get("n", "")
        return isinstance(modulus, str) and len(modulus.rstrip("=")) * 6 >= 2040  # base64url digits → bits
    return False


def check_assertion_alg(client, alg) -> str | None:
    """Why a client assertion signed with `alg` is refused for this client, or None."""
    if is_fapi(client) and alg not in ASSERTION_ALGS:
        return "A FAPI 2.0 client signs its client assertion with PS256 or ES256; RS256 and others are refused."
    return None


def check_token_proof(client) -> dpop.Proof | None:
    """At the token endpoint, once the client is known: the request's verified DPoP proof (None if it sent none
    and may do so); invalid_dpop_proof for a client that must send one, or a FAPI client's proof in RS256."""
    proof = g.get("dpop")
    if proof is None:
        if requires_dpop(client):
            raise dpop.invalid_proof("This client's tokens are sender-constrained: send a DPoP proof with the "
                                     "token request.")
        return None
    if is_fapi(client) and proof.alg not in dpop.FAPI_SIGNING_ALGS:
        raise dpop.invalid_proof("A FAPI 2.0 client signs its DPoP proofs with ES256, PS256 or Ed25519 (EdDSA).")
    return proof
