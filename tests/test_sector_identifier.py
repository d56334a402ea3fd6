"""Pairwise sectors (OIDC Core §8.1): a client's sector is its one redirect host, or the host of a
sector_identifier_uri whose JSON array — fetched over https at registration — lists every redirect URI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idp.oidc.clients import ClientRegistrationError, ClientRegistry
from tests.document_server import DocumentServer, make_test_ca

ROOT = Path(__file__).resolve().parents[1]
SHOP = ["https://shop.example.jp/cb", "https://login.shop.example.jp/cb"]


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("documents-ca"))


@pytest.fixture
def documents(test_ca):
    with DocumentServer(tls=test_ca) as server:
        yield server


@pytest.fixture
def registry(redis_client, test_ca):
    return ClientRegistry(redis_client, fetch_ca_file=str(test_ca.ca_file))


def refused(registry, *args, **kwargs) -> ClientRegistrationError:
    with pytest.raises(ClientRegistrationError) as info:
        registry.add(*args, **kwargs)
    assert info.value.code == "invalid_client_metadata"
    return info.value


def test_a_sector_identifier_listing_every_redirect_uri_names_the_sector(registry, documents):
    uri = documents.put("/shop-sector.json", json.dumps([*SHOP, "https://other.shop.example.jp/cb"]))
    client, _ = registry.add("Shop", SHOP, sector_identifier_uri=uri)
    assert client.sector == "127.0.0.1" and documents.requests == ["/shop-sector.json"]


def test_an_rp_claiming_another_rps_sector_is_refused(registry, documents):
    shop_sector = documents.put("/shop-sector.json", json.dumps(SHOP))
    shop, _ = registry.add("Shop", SHOP, sector_identifier_uri=shop_sector)
    error = refused(registry, "Tracker", ["https://tracker.example.com/cb"], sector_identifier_uri=shop_sector)
    assert "does not list" in error.message and "https://tracker.example.com/cb" in error.message
    assert [c.client_id for c in registry.list()] == [shop.client_id]


def test_redirect_uris_on_several_hosts_need_a_sector_identifier(registry):
    error = refused(registry, "Shop", ["https://a.example.jp/cb", "https://b.example.jp/cb"])
    assert "sector_identifier_uri" in error.message
    client, _ = registry.add("Shop", ["https://a.example.jp/cb", "https://a.example.jp/cb2"])
    assert client.sector == "a.example.jp"


@pytest.mark.parametrize(("body", "status", "why"), [
    ("{\"redirect_uris\": []}", 200, "JSON array"),
    ("[1, 2]", 200, "JSON array"),
    ("not json", 200, "not valid JSON"),
    ("[" * 2000 + "]" * 2000, 200, "not valid JSON"),
    ("[\"" + "x" * 70_000 + "\"]", 200, "larger than"),
    ("[]", 404, "HTTP 404"),
])
def test_a_sector_identifier_document_that_is_not_a_list_of_uris_is_refused(registry, documents, body, status,
                                                                           why):
    uri = documents.put("/sector.json", body, status=status)
    error = refused(registry, "Shop", SHOP, sector_identifier_uri=uri)
    assert why in error.message and error.message.endswith(".")


def test_a_sector_identifier_redirect_is_not_followed(registry, documents):
    target = documents.put("/real.json", json.dumps(SHOP))
    moved = documents.put("/moved.json", "", status=302, Location=target)
    error = refused(registry, "Shop", SHOP, sector_identifier_uri=moved)
    assert "redirect" in error.message and documents.requests == ["/moved.json"]


def test_a_sector_identifier_must_be_https_and_its_certificate_trusted(redis_client, registry, documents, test_ca):
    with DocumentServer() as plain:
        error = refused(registry, "Shop", SHOP, sector_identifier_uri=plain.put("/s.json", json.dumps(SHOP)))
        assert "https" in error.message and plain.requests == []
    uri = documents.put("/s.json", json.dumps(SHOP))
    untrusting = ClientRegistry(redis_client)  # the system's CAs only: the test CA is unknown there
    error = refused(untrusting, "Shop", SHOP, sector_identifier_uri=uri)
    assert "certificate" in error.message


def test_the_clients_cli_fetches_the_sector_identifier_with_the_configured_ca(redis_server, documents, test_ca,
                                                                             tmp_path):
    uri = documents.put("/cli-sector.json", json.dumps(SHOP))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "MYKEY_VAR": str(tmp_path),
           "IDP_FETCH_CA_FILE": str(test_ca.ca_file)}
    command = [sys.executable, "-m", "idp", "clients", "add", "--name", "CLI Shop", "--sector-identifier-uri", uri]
    for redirect in SHOP:
        command += ["--redirect-uri", redirect]
    added = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert added.returncode == 0, added.stderr
    assert "sector 127.0.0.1" in added.stdout
    env.pop("IDP_FETCH_CA_FILE")
    untrusted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert untrusted.returncode == 1 and "invalid_client_metadata" in untrusted.stderr
    assert "Traceback" not in untrusted.stderr
