"""The demo relying party (Flask + Authlib's OpenID Connect client).

    DEMO_RP_ISSUER, DEMO_RP_CLIENT_ID, DEMO_RP_CLIENT_SECRET, DEMO_RP_URL   (make run sets them)
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, redirect, render_template, request, session, url_for

from demo_rp.signing import add_contract_signing, finish_contract

FACT_SCOPES = "name address birthdate gender"


def create_app(issuer: str | None = None, client_id: str | None = None, client_secret: str | None = None,
               base_url: str | None = None) -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    issuer = (issuer or os.environ["DEMO_RP_ISSUER"]).rstrip("/")
    base_url = (base_url or os.environ.get("DEMO_RP_URL", "http://127.0.0.1:8082")).rstrip("/")
    oauth = OAuth(app)
    oauth.register(
        "mykey",
        client_id=client_id or os.environ["DEMO_RP_CLIENT_ID"],
        client_secret=client_secret or os.environ["DEMO_RP_CLIENT_SECRET"],
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid", "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic"},
    )

    @app.get("/")
    def home():
        return render_template("home.html", user=session.get("user"), facts=session.get("facts"))

    @app.get("/login")
    def login():
        scope = "openid " + FACT_SCOPES if request.args.get("facts") else "openid"
        return oauth.mykey.authorize_redirect(f"{base_url}/callback", scope=scope)

    @app.get("/callback")
    def callback():
        if "error" in request.args:
            return render_template("home.html", error=request.args["error"], user=None, facts=None), 400
        if request.args.get("iss") != issuer:  # RFC 9207: the response must come from our provider
            abort(400)
        token = oauth.mykey.authorize_access_token()  # checks state, PKCE; validates the ID token and nonce
        signed = finish_contract(app, token)  # a contract signed with the card (demo_rp/signing.py)
        if signed is not None:
            return signed
        claims = dict(token["userinfo"])
        session["user"] = {k: claims[k] for k in ("sub", "auth_time", "acr", "amr") if k in claims}
        session["facts"] = {k: claims[k] for k in ("name", "address", "birthdate", "gender") if k in claims} or None
        session["id_token"] = token["id_token"]
        return redirect(url_for("home"))

    add_contract_signing(app, oauth, base_url)

    @app.post("/logout")
    def logout():
        id_token = session.pop("id_token", None)
        session.clear()
        metadata = oauth.mykey.load_server_metadata()
        query = urlencode({"id_token_hint": id_token or "", "post_logout_redirect_uri": f"{base_url}/"})
        return redirect(f"{metadata['end_session_endpoint']}?{query}")

    return app
