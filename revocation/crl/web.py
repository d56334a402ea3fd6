"""CRLs over HTTP: `GET /crl/<issuer>/<shard>.crl` (complete) and `GET /crl/<issuer>/<shard>-delta.crl` (delta).

The body is the DER CRL as `application/pkix-crl` (RFC 2585 §4.2), the URL the one in the certificates' CRL
distribution point and in the CRL's own issuingDistributionPoint. A CRL is the same bytes for every client until
it is replaced, so shared caches may keep it until its nextUpdate; Last-Modified is its thisUpdate, and the ETag
(the CRL number and thisUpdate) allows a conditional GET that is answered without reading the CRL from Redis.
An unknown issuer or shard is a 404 with a stable code; the path is not echoed.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, jsonify, request

from revocation import services
from revocation.crl.publisher import CrlVersion

PKIX_CRL = "application/pkix-crl"

blueprint = Blueprint("crl", __name__)


def _publisher():
    return services.current().crl


@blueprint.get("/crl/<issuer>/<int:shard>.crl")
def complete_crl(issuer: str, shard: int) -> Response:
    return _serve(issuer, shard, delta=False)


@blueprint.get("/crl/<issuer>/<int:shard>-delta.crl")
def delta_crl(issuer: str, shard: int) -> Response:
    return _serve(issuer, shard, delta=True)


def _serve(issuer: str, shard: int, delta: bool):
    publisher = _publisher()
    if request.if_none_match:
        # A cache revalidating: answer from the publication's number and times, without reading the CRL.
        version = publisher.version(issuer, shard, delta=delta)
        if version is not None and request.if_none_match.contains(version.tag):
            return _cacheable(Response(status=304), version)
    published = publisher.get(issuer, shard, delta=delta)
    if published is None:
        return jsonify(error="unknown_crl", message="There is no CRL for that issuer and shard."), 404
    response = _cacheable(Response(published.der, mimetype=PKIX_CRL), published.version)
    return response.make_conditional(request)


def _cacheable(response: Response, version: CrlVersion) -> Response:
    """A CRL is the same bytes for every client until its nextUpdate; the ETag names the publication."""
    seconds_left = (version.next_update - dt.datetime.now(dt.UTC)).total_seconds()
    response.cache_control.public = True
    response.cache_control.max_age = max(0, int(seconds_left))
    response.expires = version.next_update
    response.last_modified = version.this_update
    response.set_etag(version.tag)
    return response
