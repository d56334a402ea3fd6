"""A real PDF signed by the virtual card through the platform, as PAdES baseline B-LT (demo_rp/pades.py): signed
attributes with signing-certificate-v2 built by the bridge, a signature time-stamp from the development TSA
(devstack/tsa.py) over HTTP, and the validation data of both in the DSS. Checked by two independent validators:
pyHanko's, with the dev signing root and the TSA root as the only trust anchors and no network (every revocation
status must come from the file), and poppler's `pdfsig` with an NSS trust store made here. A file altered after
signing is reported altered by both. The TSA is also checked by openssl's own RFC 3161 client."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding

from demo_rp.contract import contract_pdf
from demo_rp.pades import PadesError, finish, prepare, validate
from devstack.http import LiveServer
from devstack.processes import free_port
from devstack.tsa import DevTSA
from devstack.tsa import create_app as create_tsa_app
from jpki.devca import DevCA
from tests.conftest import SIGN_PIN
from tests.idp_flow import Browser, bridge_login, query_of
from tests.log_registry import register_sensitive
from tests.test_document_signing import REDIRECT, SHA256, authorize_url, token


# pdfsig checks the signer's certificate online, at the OCSP responder its AIA names (it does not read the DSS):
# this module's dev CA names the revocation service the tests run, on a port chosen here. (poppler 22.12 reports a
# certificate whose responder cannot be reached as "Unknown issue", even with -no-ocsp.)
@pytest.fixture(scope="module")
def dev_ca(tmp_path_factory) -> DevCA:
    return DevCA.load_or_create(tmp_path_factory.mktemp("pki-pades"), f"http://127.0.0.1:{free_port()}")


@pytest.fixture
def revocation_service(revocation_config, revocation_services, dev_ca):
    from revocation.app import create_app

    port = urlsplit(dev_ca.revocation_url).port
    with LiveServer(create_app(revocation_config, revocation_services), port=port) as live:
        live.services = revocation_services
        yield live


@pytest.fixture(scope="module")
def tsa():
    port = free_port()
    authority = DevTSA.generate(f"http://127.0.0.1:{port}")
    with LiveServer(create_tsa_app(authority), port=port) as live:
        live.authority = authority
        yield live


@pytest.fixture
def rp(idp_service):
    return idp_service.services.clients.add("Example Shop", [REDIRECT])


@pytest.fixture
def signed_pdf(idp_service, rp, make_card, tsa, tmp_path) -> bytes:
    card = make_card()
    idp_service.register_card(card)
    prepared = prepare(contract_pdf("Sales contract", ["Example Shop sells one teapot to the customer.",
                                                       "Price: 3,000 yen, delivered within 7 days."]))
    register_sensitive("Sales contract", prepared.to_sign_b64)
    details = json.dumps([{"type": "credential", "hashAlgorithmOID": SHA256,
                           "documentDigests": [{"hash": prepared.to_sign_b64, "label": "Sales contract"}]}])
    url, verifier = authorize_url(idp_service, rp[0].client_id, details)
    browser = Browser(idp_service.url)
    run = bridge_login(browser.start(url), card, pins=f"1234\n{SIGN_PIN}\n", extra=["--approve-signing"])
    assert run.returncode == 0, run.stdout + run.stderr
    code = query_of(browser.finish().headers["Location"])["code"]
    answer = token(idp_service, rp, code, verifier)
    assert answer.status_code == 200, answer.text
    return finish(prepared, answer.json()["authorization_details"][0], tsa_url=f"{tsa.url}/tsa")


def _altered(pdf: bytes) -> bytes:
    position = pdf.index(b"teapot")
    return pdf[:position] + b"kettle" + pdf[position + 6:]


def test_pyhanko_finds_the_signature_intact_trusted_time_stamped_and_b_lt(signed_pdf, dev_ca, tsa):
    report = validate(signed_pdf, [dev_ca.signing.certificate], [tsa.authority.root])
    assert report.intact and report.trusted and report.revocation_embedded
    assert report.timestamp is not None and report.level == "B-LT"


def test_the_time_stamp_needs_its_own_trusted_root(signed_pdf, dev_ca):
    with pytest.raises(PadesError) as untrusted:  # the JPKI root does not vouch for a time-stamp
        validate(signed_pdf, [dev_ca.signing.certificate], [dev_ca.signing.certificate])
    assert untrusted.value.code == "timestamp_untrusted"


def test_the_development_tsa_answers_openssl(tsa, tmp_path):
    # openssl's RFC 3161 client makes the query and verifies the reply against the TSA root (EKU timeStamping).
    assert shutil.which("openssl"), "openssl is missing"
    (tmp_path / "data").write_bytes(b"any signature value")
    (tmp_path / "root.pem").write_bytes(tsa.authority.root.public_bytes(Encoding.PEM))
    (tmp_path / "tsa.pem").write_bytes(tsa.authority.certificate.public_bytes(Encoding.PEM))
    subprocess.run(["openssl", "ts", "-query", "-data", tmp_path / "data", "-sha256", "-cert", "-out",
                    tmp_path / "q.tsq"], check=True, timeout=60)
    reply = requests.post(f"{tsa.url}/tsa", data=(tmp_path / "q.tsq").read_bytes(), timeout=30,
                          headers={"Content-Type": "application/timestamp-query"})
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/timestamp-reply"
    (tmp_path / "r.tsr").write_bytes(reply.content)
    run = subprocess.run(["openssl", "ts", "-verify", "-data", tmp_path / "data", "-in", tmp_path / "r.tsr",
                          "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "tsa.pem"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "Verification: OK" in run.stdout, run.stdout + run.stderr
    garbage = requests.post(f"{tsa.url}/tsa", data=b"not a query", timeout=30,
                            headers={"Content-Type": "application/timestamp-query"})
    assert garbage.status_code == 400 and "TimeStampReq" in garbage.text


def test_pyhanko_refuses_an_altered_file_and_a_foreign_root(signed_pdf, dev_ca, tsa):
    with pytest.raises(PadesError) as altered:
        validate(_altered(signed_pdf), [dev_ca.signing.certificate], [tsa.authority.root])
    assert altered.value.code == "signature_not_intact"
    with pytest.raises(PadesError) as foreign:  # the auth root never issues signing certificates
        validate(signed_pdf, [dev_ca.auth.certificate], [tsa.authority.root])
    assert foreign.value.code == "untrusted_or_unproved"


def _nss_db(tmp_path, root) -> str:
    for tool in ("certutil", "pdfsig"):
        assert shutil.which(tool), f"{tool} is missing: scripts/bootstrap.sh installs poppler-utils, libnss3-tools"
    db = tmp_path / "nss"
    db.mkdir()
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, timeout=60)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "jpki-sign-root", "-t", "C,C,C", "-i",
                    str(tmp_path / "root.pem")], check=True, timeout=60)
    return f"sql:{db}"


def _pdfsig(pdf: bytes, nss: str, tmp_path) -> str:
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    run = subprocess.run(["pdfsig", "-nssdir", nss, str(path)], capture_output=True, text=True, timeout=60)
    return run.stdout + run.stderr


def test_pdfsig_calls_the_signature_valid_and_the_certificate_trusted(signed_pdf, dev_ca, tmp_path):
    out = _pdfsig(signed_pdf, _nss_db(tmp_path, dev_ca.signing.certificate), tmp_path)
    assert "Signature is Valid" in out, out
    assert "Certificate is Trusted" in out, out
    assert "ETSI.CAdES.detached" in out, out


def test_pdfsig_reports_an_altered_file(signed_pdf, dev_ca, tmp_path):
    out = _pdfsig(_altered(signed_pdf), _nss_db(tmp_path, dev_ca.signing.certificate), tmp_path)
    assert "Signature is Valid" not in out and "Digest Mismatch" in out, out


def test_the_file_carries_the_chains_the_ocsp_response_and_the_tsa_crl(signed_pdf):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    reader = PdfFileReader(io.BytesIO(signed_pdf))
    dss = DocumentSecurityStore.read_dss(reader)
    # the signer's certificate, the root, the OCSP responder's certificate from the response, the TSA's certificate
    assert len(list(dss.ocsps)) == 1 and len(list(dss.certs)) == 4 and len(list(dss.crls)) == 1
    (signature,) = reader.embedded_signatures
    signed = {a["type"].native for a in signature.signer_info["signed_attrs"]}
    unsigned = {a["type"].native for a in signature.signer_info["unsigned_attrs"]}
    assert signed == {"content_type", "message_digest", "signing_certificate_v2"}  # PAdES B-B, no signing-time
    assert unsigned == {"signature_time_stamp_token"}
