"""The demo relying party (Flask + Authlib's OpenID Connect client), and a signals receiver (demo_rp/receiver.py):
it subscribes to the IdP's SSF stream when it starts, and its page notices by itself when the session ended.

    DEMO_RP_ISSUER, DEMO_RP_CLIENT_ID, DEMO_RP_CLIENT_SECRET, DEMO_RP_URL   (make run sets them)
"""

from __future__ import annotations

import os
import secrets
import time
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, jsonify, redirect, render_template, request, session, url_for

from demo_rp.receiver import SignalsReceiver, TokenRefused
from demo_rp.signing import add_contract_signing, finish_contract

FACT_SCOPES = "name address birthdate gender"


def create_app(issuer: str | None = None, client_id: str | None = None, client_secret: str | None = None,
               base_url: str | None = None, subscribe: bool = True, tsa_url: str | None = None) -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    issuer = (issuer or os.environ["DEMO_RP_ISSUER"]).rstrip("/")
    base_url = (base_url or os.environ.get("DEMO_RP_URL", "http://127.0.0.1:8082")).rstrip("/")
    client_id = client_id or os.environ["DEMO_RP_CLIENT_ID"]
    client_secret = client_secret or os.environ["DEMO_RP_CLIENT_SECRET"]
    # The RFC 3161 time-stamping authority that stamps the contracts it signs (PAdES B-T/B-LT, demo_rp/pades.py);
    # none: signed PDFs carry no time-stamp.
    app.config["TSA_URL"] = tsa_url or os.environ.get("DEMO_RP_TSA_URL") or None
    receiver = SignalsReceiver(issuer, client_id, client_secret, base_url)
    app.extensions["signals_receiver"] = receiver
    if subscribe:
        receiver.subscribe_in_background()
    oauth = OAuth(app)
    oauth.register(
        "mykey",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid", "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic"},
    )

    def live_user():
        """The session's user, unless a signal ended that session since it began (then it is cleared)."""
        user = session.get("user")
        if user and receiver.session_over(user.get("sub"), session.get("sid"), session.get("began", 0.0)):
            session.clear()
            return None
        return user

    @app.get("/")
    def home():
        user = live_user()
        return render_template("home.html", user=user, facts=session.get("facts") if user else None)

    @app.get("/session")
    def session_status():
        """What the page asks every few seconds: is this browser still logged in?"""
        response = jsonify(logged_in=live_user() is not None)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/ssf/events")
    def ssf_events():
        """RFC 8935 push endpoint: 202 for a SET taken (or seen before), 400 with `err` for one refused."""
        if request.headers.get("Authorization") != f"Bearer {receiver.push_secret}":
            return jsonify(err="authentication_failed", description="Wrong or missing Authorization."), 401
        if request.mimetype != "application/secevent+jwt":
            return jsonify(err="invalid_request", description="Send application/secevent+jwt."), 400
        try:
            receiver.take_set(request.get_data(as_text=True))
        except TokenRefused as refused:
            return jsonify(err=refused.err, description=refused.description), 400
        return "", 202

    @app.post("/backchannel-logout")
    def backchannel_logout():
        """Back-Channel Logout 1.0 §2.8: 200 when the sessions ended, 400 for a token not believed."""
        try:
            receiver.take_logout_token(request.form.get("logout_token", ""))
        except TokenRefused as refused:
            response = jsonify(error="invalid_request", error_description=refused.description)
            response.status_code = 400
        else:
            response = app.response_class(status=200)
        response.headers["Cache-Control"] = "no-store"
        return response

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
        session["sid"] = claims.get("sid")
        session["began"] = time.time()
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
