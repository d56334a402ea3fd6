"""Random bytes at every parser that takes card or network input: typed errors only, never a crash or a hang."""

import base64
import datetime as dt
import json
import time
import urllib.parse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPResponseStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jpki.certificate import CertificateError, decode_der_string, parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.apdu import CardError, CommandAPDU, ResponseAPDU, StatusWordError
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports import BaseTransport
from nfc_bridge.virtual_card import VirtualCard
from revocation.domain.events import EVENT_TYPES, EventRefused, parse_event, parse_event_json
from wire.json_input import JSONInputError, loads

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=300))
def test_response_parser_takes_any_bytes(raw):
    try:
        response = ResponseAPDU.from_bytes(raw)
    except CardError:
        assert len(raw) < 2
        return
    assert response.to_bytes() == raw


@FUZZ
@given(st.binary(max_size=4000))
def test_certificate_parser_takes_any_bytes(raw):
    try:
        parse_certificate(raw)
    except CertificateError:
        pass


@FUZZ
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")  # mutated serials
@given(st.data())
def test_certificate_parser_takes_a_mutated_real_certificate(card_file, data):
    der = bytearray(VirtualCard.load(card_file).certificate(CertificateKind.SIGNING))
    for _ in range(data.draw(st.integers(1, 8))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    try:
        parse_certificate(bytes(der))
    except CertificateError:
        pass


@FUZZ
@given(st.binary(max_size=64))
def test_der_string_decoder_takes_any_bytes(raw):
    try:
        decode_der_string(raw)
    except CertificateError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_command_parser_refuses_cleanly(raw):
    try:
        CommandAPDU.from_bytes(raw)
    except ValueError:
        pass


class RandomCard(BaseTransport):
    """Answers every command with bytes drawn by hypothesis."""

    def __init__(self, answers):
        self.answers = answers

    def transmit(self, command: bytes) -> bytes:
        return self.answers.draw(st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=300).map(lambda b: b + b"\x90\x00"),
            st.sampled_from([b"\x90\x00", b"\x63\xc1", b"\x62\x82", b"\x6b\x00"]),
        ))


@FUZZ
@given(st.data())
def test_client_meets_random_answers_with_card_errors_only(data):
    transport = RandomCard(data)
    try:
        client = JpkiClient.connect(transport)
        client.read_certificate(CertificateKind.AUTH)
        client.sign(CertificateKind.AUTH, b"m", "1234", confirm_last_try=lambda: False)
    except CardError:
        pass


# --- wire.json_input: every text from outside is JSON the platform accepts, or JSONInputError ---------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
JSON_PIECES = st.sampled_from(['[', ']', '{', '}', '"', '\\', '\\"', ',', ':', '1e999', '-1e999', 'NaN', 'Infinity',
                               '1' * 5000, 'true', 'null', '"a"', '\\u0000', '\\ud800', '\u2028', '\ufeff', ' '])


def _loads_or_refuses(data):
    try:
        return loads(data)
    except JSONInputError as refused:
        assert refused.reason in ("syntax", "depth", "size", "number")
        return refused


@FUZZ
@given(st.binary(max_size=2000))
def test_json_input_takes_any_bytes(raw):
    _loads_or_refuses(raw)


@FUZZ
@given(st.lists(JSON_PIECES | st.text(max_size=20), max_size=200).map("".join))
def test_json_input_takes_any_text_made_of_json_pieces(text):
    value = _loads_or_refuses(text)
    if not isinstance(value, JSONInputError):
        assert json.loads(json.dumps(value)) == value  # what is accepted is plain, finite JSON


@FUZZ
@given(JSON_VALUES)
def test_json_input_reads_back_every_document_it_should_accept(value):
    assert loads(json.dumps(value)) == value


@FUZZ
@given(st.integers(33, 100_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]), st.booleans())
def test_json_input_refuses_deep_nesting_as_depth(depth, opener, closed):
    text = opener * depth
    if closed:
        text += "".join({"[": "]", "{": "}"}[c] for c in reversed(opener) if c in "[{") * depth
    with pytest.raises(JSONInputError) as refused:
        loads(text)
    assert refused.value.reason in ("depth", "size")


def test_json_input_depth_check_is_linear_in_an_unclosed_string():
    # Every escaped quote of an unclosed string used to start a new scan to the end: 50 s for 100 KB.
    text = '"' + 'a\\"' * 30_000 + "[" * 40
    started = time.perf_counter()
    with pytest.raises(JSONInputError):
        loads(text)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("number", ["1e999", "-1e999", "[1.5e400]", '{"a": 2e308}'])
def test_json_input_refuses_numbers_beyond_a_double(number):
    with pytest.raises(JSONInputError) as refused:
        loads(number)
    assert refused.value.reason == "number"


def test_json_input_counts_size_in_utf8_bytes():
    with pytest.raises(JSONInputError) as refused:
        loads('"' + "あ" * 400 + '"', max_bytes=1000)  # 400 characters, 1,202 bytes
    assert refused.value.reason == "size"


def _mutate(data, raw: bytes) -> bytes:
    """A few bytes of a real document replaced, cut or grown: past the outer framing into the fields."""
    raw = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, max(0, len(raw) - 1)))
        action = data.draw(st.sampled_from(["set", "cut", "insert"]))
        if action == "set" and raw:
            raw[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[position:position + data.draw(st.integers(1, 64))]
        else:
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


# --- APDU answers: a status word's exception, never anything else ---------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_checking_any_card_answer_raises_only_card_errors(raw):
    try:
        response = ResponseAPDU.from_bytes(raw).check()
    except StatusWordError as error:
        assert error.code and error.sw == int.from_bytes(raw[-2:], "big") != 0x9000
        return
    except CardError:
        assert len(raw) < 2
        return
    assert response.ok


# --- OCSP requests as the responder reads them: an OCSP answer, never internalError ---------------------------------


def _ocsp_status(der: bytes):
    return ocsp.load_der_ocsp_response(der).response_status


@FUZZ
@given(st.binary(max_size=600))
def test_ocsp_responder_answers_any_bytes_the_ocsp_way(revocation_services, raw):
    answer = revocation_services.ocsp.respond(raw)
    assert answer.status is not OCSPResponseStatus.INTERNAL_ERROR
    assert _ocsp_status(answer.der) is answer.status


@FUZZ
@given(st.data())
def test_ocsp_responder_answers_a_mutated_real_request(revocation_services, ocsp_requests, data):
    request = ocsp_requests[data.draw(st.sampled_from(sorted(ocsp_requests)))]
    answer = revocation_services.ocsp.respond(_mutate(data, request))
    assert answer.status is not OCSPResponseStatus.INTERNAL_ERROR
    assert _ocsp_status(answer.der) is answer.status


@pytest.fixture
def ocsp_requests(issue_card, dev_ca) -> dict[str, bytes]:
    """Real requests for a registered certificate: SHA-1 and SHA-256 CertIDs, with and without a nonce."""
    card = issue_card()
    requests_ = {}
    for name, algorithm in (("sha1", hashes.SHA1()), ("sha256", hashes.SHA256())):
        for nonce in (None, b"n" * 16):
            builder = ocsp.OCSPRequestBuilder().add_certificate(card["auth"], dev_ca.auth.certificate, algorithm)
            if nonce:
                builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
            requests_[f"{name}-{bool(nonce)}"] = builder.build().public_bytes(serialization.Encoding.DER)
    return requests_


@FUZZ
@given(st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=400)
       | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()))
def test_ocsp_get_answers_any_path_the_ocsp_way(revocation_app_client, encoded):
    path = "/ocsp/" + urllib.parse.quote(encoded, safe="/")
    response = revocation_app_client.get(path)
    if response.status_code == 404:  # only a path that normalises away to "/ocsp/" (no request at all)
        assert not encoded.strip("/") or response.is_json
        return
    assert response.status_code == 200 and response.mimetype == "application/ocsp-response"
    assert _ocsp_status(response.data) is not OCSPResponseStatus.INTERNAL_ERROR


@pytest.fixture
def revocation_app_client(revocation_config, revocation_services):
    from revocation.app import create_app

    return create_app(revocation_config, revocation_services).test_client()


def test_ocsp_get_keeps_double_slashes_of_its_base64(revocation_app_client):
    response = revocation_app_client.get("/ocsp//w==")
    assert response.status_code == 200 and response.mimetype == "application/ocsp-response"


# --- resident-register events: a RevocationEvent or EventRefused, from a document, a text, or a stream entry --------

TIMES = (st.datetimes(timezones=st.timezones() | st.just(dt.UTC) | st.none()).map(dt.datetime.isoformat)
         | st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01", "2026-01-01T00:00Z",
                            "2026-13-01T00:00:00Z", "2026-01-01T00:00:00ZZ", "", "1970-01-01T00:00:00Z"])
         | st.text(max_size=40))
SERIALS = st.from_regex(r"[0-9A-F]{1,44}", fullmatch=True) | st.text(max_size=8)
KINDS = st.sampled_from(["auth", "signing", "x"])
COMMON_FIELDS = {"event_id": st.just("e-1") | st.text(max_size=140), "type": st.sampled_from(EVENT_TYPES),
                 "holder": st.just("h-1") | st.text(max_size=70), "occurred_at": TIMES,
                 "source": st.just("fuzz") | st.text(max_size=70)}
EXTRA_FIELDS = {
    "card_id": st.text(max_size=20), "kinds": st.lists(KINDS, max_size=3),
    "changed": st.lists(st.sampled_from(["name", "address", "birthdate", "sex", "x"]), max_size=5),
    "certificates": st.lists(st.fixed_dictionaries({"serial": SERIALS, "kind": KINDS, "not_after": TIMES}),
                             max_size=3),
    "renewals": st.lists(st.fixed_dictionaries({"kind": KINDS, "old_serial": SERIALS, "new_serial": SERIALS,
                                                "not_after": TIMES}), max_size=3),
}
EVENT_LIKE = st.fixed_dictionaries({name: strategy | JSON_SCALARS for name, strategy in COMMON_FIELDS.items()},
                                   optional={name: strategy | JSON_VALUES for name, strategy in EXTRA_FIELDS.items()})


def _event_or_refusal(parse, document):
    try:
        event = parse(document)
    except EventRefused as refused:
        assert refused.code in ("invalid_event", "unknown_event_type", "my_number_refused", "malformed_json",
                                "event_too_large")
        return refused
    assert event.occurred_at.tzinfo is not None and event.type in EVENT_TYPES
    return event


@FUZZ
@given(EVENT_LIKE | JSON_VALUES)
def test_event_parser_takes_any_document(document):
    event = _event_or_refusal(parse_event, document)
    if not isinstance(event, EventRefused):
        assert parse_event(event.to_json()) == event  # what travels on the stream reads back the same


@FUZZ
@given(st.binary(max_size=2000) | EVENT_LIKE.map(json.dumps).map(str.encode)
       | st.lists(JSON_PIECES | st.text(max_size=20), max_size=200).map("".join))
def test_event_text_parser_takes_any_bytes(raw):
    _event_or_refusal(parse_event_json, raw)


@FUZZ
@given(st.lists(st.binary(max_size=300) | EVENT_LIKE.map(json.dumps) | st.just("[" * 5000), min_size=1, max_size=5))
def test_a_stream_entry_of_any_bytes_is_applied_or_set_aside(revocation_services, entries):
    stream = revocation_services.stream
    for raw in entries:
        revocation_services.redis.xadd(stream.stream, {"event": raw})
    done = stream.consume("fuzz", revocation_services.applier, count=len(entries))
    assert len(done) == len(entries)  # every entry finished: acknowledged, applied or in the dead letters
    assert all((d.outcome is None) != (d.refused is None) for d in done)


# --- relying-party registration: a client or ClientRegistrationError, whatever the metadata ------------------------

URI_LIKE = st.builds("{}{}{}".format, st.sampled_from(["https://", "http://", "", "ftp://", "https:", "HTTPS://"]),
                     st.sampled_from(["127.0.0.1", "localhost", "[::1]", "rp.example", "[", "[::1", "", "a b",
                                      "rp.example:99999", "rp.example:x", "user@rp.example"]),
                     st.sampled_from(["", "/cb", "/cb#frag", "/cb?x=1", "/\u00e9"]) | st.text(max_size=12))


@FUZZ
@given(name=st.text(max_size=120), redirect_uris=st.lists(URI_LIKE, max_size=3),
       jwks=st.none() | st.fixed_dictionaries({"keys": st.lists(JSON_VALUES, max_size=2)}) | JSON_VALUES,
       jwks_uri=st.none() | URI_LIKE, id_token_alg=st.sampled_from(["RS256", "ES256", "none", ""]),
       post_logout=st.none() | st.lists(URI_LIKE, max_size=2))
def test_client_registration_takes_any_metadata(redis_client, name, redirect_uris, jwks, jwks_uri, id_token_alg,
                                                post_logout):
    from idp.oidc.clients import ClientRegistrationError, ClientRegistry

    try:  # no sector_identifier_uri: it would be fetched from the network
        client, secret = ClientRegistry(redis_client).add(name, redirect_uris, jwks, jwks_uri, None, id_token_alg,
                                                          post_logout)
    except ClientRegistrationError as refused:
        assert refused.code in ("invalid_client_metadata", "invalid_redirect_uri")
        return
    assert client.redirect_uris == redirect_uris and (secret is None) == (client.jwks is not None or bool(jwks_uri))


@pytest.mark.parametrize("uri", ["https://[", "https://[::1/cb"])
def test_a_uri_that_urlsplit_refuses_is_invalid_redirect_uri(redis_client, uri):
    from idp.oidc.clients import ClientRegistrationError, ClientRegistry

    try:
        ClientRegistry(redis_client).add("RP", [uri])
    except ClientRegistrationError as refused:
        assert refused.code == "invalid_redirect_uri"
    except ValueError as error:
        raise AssertionError(f"a bare {type(error).__name__}, not ClientRegistrationError") from None
    else:
        raise AssertionError("accepted")


# --- OCSP responses and CRLs as the IdP reads them: a status, or SourceFailed ------------------------------------


class AnswerServer:
    """A loopback HTTP server answering every request with `self.answer(path, body)`: bytes drawn by hypothesis,
    or a real answer of the revocation service with some bytes changed."""

    def __init__(self):
        self.answer = lambda path, body: b""

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        data = self.answer(environ["PATH_INFO"], body)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
        return [data]


@pytest.fixture
def answer_server():
    from devstack.http import LiveServer

    app = AnswerServer()
    with LiveServer(app) as live:
        app.url = live.url
        yield app


@pytest.fixture
def registered_card(issue_card):
    return issue_card()


@pytest.fixture
def idp_checker(answer_server, dev_ca):
    from idp.login.revocation_check import RevocationChecker
    from idp.login.trust import TrustStore

    return RevocationChecker(f"{answer_server.url}/ocsp", answer_server.url,
                             TrustStore.development((dev_ca.auth, dev_ca.signing)), timeout=5, crl_cache_seconds=0)


def _status_or_source_failed(check, *args):
    from idp.login.revocation_check import RevocationResult, SourceFailed

    try:
        result = check(*args)
    except SourceFailed as failed:
        assert failed.reason
        return
    assert isinstance(result, RevocationResult)


@FUZZ
@given(st.data())
def test_idp_reads_any_ocsp_answer_as_a_status_or_a_failed_source(idp_checker, answer_server, revocation_services,
                                                                   registered_card, dev_ca, data):
    card = registered_card
    real = data.draw(st.booleans())
    answer_server.answer = ((lambda path, body: _mutate(data, revocation_services.ocsp.respond(body).der)) if real
                            else (lambda path, body: data.draw(st.binary(max_size=2000))))
    _status_or_source_failed(idp_checker.check_ocsp, card["auth"], dev_ca.auth.certificate)


@FUZZ
@given(st.data())
def test_idp_reads_any_crl_as_a_status_or_a_failed_source(idp_checker, answer_server, revocation_service,
                                                          registered_card, dev_ca, data):
    card = registered_card
    real = data.draw(st.booleans())

    def answer(path, body):
        if not real:
            return data.draw(st.binary(max_size=2000))
        published = requests.get(revocation_service.url + path, timeout=30)
        assert published.status_code == 200  # the shard's real CRL is what gets mutated
        return _mutate(data, published.content)

    answer_server.answer = answer
    _status_or_source_failed(idp_checker.check_crl, card["auth"], dev_ca.auth.certificate)


# --- login proofs on the bridge API: a documented refusal, never a crash ---------------------------------------------

LOGIN_REFUSALS = {400, 403, 404, 409, 410}  # docs/bridge-api.yaml; 503 only for revocation_unknown


@settings(FUZZ, max_examples=150)  # each example is a login created, fetched and answered over HTTP
@given(st.data())
def test_bridge_api_answers_any_login_proof_with_a_documented_refusal(idp_service, card_file, data):
    from nfc_bridge.virtual_card import VirtualCard

    txn = idp_service.services.logins.create(idp_service.url, "rp_fuzz", "Fuzz RP", "/", ["name"],
                                             wants_facts=data.draw(st.booleans()))
    _, submit_token = idp_service.services.logins.fetch(txn.handle)
    card = VirtualCard.load(card_file)
    real = {"auth": card.certificate(CertificateKind.AUTH), "signing": card.certificate(CertificateKind.SIGNING)}
    b64 = st.sampled_from(list(real.values())).map(lambda der: base64.urlsafe_b64encode(der).decode().rstrip("="))
    field = b64 | st.binary(max_size=300).map(lambda b: base64.urlsafe_b64encode(b).decode()) | st.text(max_size=40)
    body = data.draw(st.fixed_dictionaries(
        {"submit_token": st.just(submit_token) | st.text(max_size=70), "token_type": st.sampled_from(["card",
                                                                                                      "smartphone"])},
        optional={"certificate": field | JSON_SCALARS, "signature": field | JSON_SCALARS,
                  "signing_certificate": field, "signing_signature": field, "extra": JSON_VALUES})
        | JSON_VALUES)
    raw = data.draw(st.just(json.dumps(body).encode()) | st.binary(max_size=200))
    response = requests.post(f"{idp_service.url}/api/login/submit", data=raw, timeout=30,
                             headers={"Content-Type": data.draw(st.sampled_from(["application/json", "text/plain"]))})
    assert response.status_code in LOGIN_REFUSALS or (
        response.status_code == 503 and response.json()["error"] == "revocation_unknown"), response.status_code
    refusal = response.json()
    assert refusal["error"] and refusal["message"] and refusal["message_ja"]
    assert submit_token not in response.text
