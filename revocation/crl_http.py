"""CRLs over HTTP: `GET /crl/<issuer>/<shard>.crl` (complete) and `GET /crl/<issuer>/<shard>-delta.crl` (delta).

The body is the DER CRL as `application/pkix-crl` (RFC 2585 §4.2), the URL the one in the certificates' CRL
distribution point and in the CRL's own issuingDistributionPoint. A CRL is the same bytes for every client until
it is replaced, so shared caches may keep it until its nextUpdate; Last-Modified is its thisUpdate, and the ETag
allows a conditional GET. An unknown issuer or shard is a 404 with a stable code; the path is not echoed.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, jsonify, request

PKIX_CRL = "application/pkix-crl"

blueprint = Blueprint("crl", __name__)


def _publisher():
    from revocation.app import services_of  # the app module imports this one

    return services_of(current_app).crl


@blueprint.get("/crl/<issuer>/<int:shard>.crl")
def complete_crl(issuer: str, shard: int) -> Response:
    return _serve(issuer, shard, delta=False)


@blueprint.get("/crl/<issuer>/<int:shard>-delta.crl")
def delta_crl(issuer: str, shard: int) -> Response:
    return _serve(issuer, shard, delta=True)


def _serve(issuer: str, shard: int, delta: bool):
    published = _publisher().get(issuer, shard, delta=delta)
    if published is None:
        return jsonify(error="unknown_crl", message="There is no CRL for that issuer and shard."), 404
    der, this_update, next_update = published
    response = Response(der, mimetype=PKIX_CRL)
    seconds_left = (next_update - dt.datetime.now(dt.UTC)).total_seconds()
    response.cache_control.public = True
    response.cache_control.max_age = max(0, int(seconds_left))
    response.expires = next_update
    response.last_modified = this_update
    # The tail of the signature: different for every CRL issued, and free to compute.
    response.set_etag(der[-16:].hex())
    return response.make_conditional(request)
