"""A real PDF signed by the virtual card through the platform, as PAdES with embedded validation data
(demo_rp/pades.py), and checked by two independent validators: pyHanko's, with the dev signing root as the only
trust anchor and no network (the revocation status must come from the OCSP response in the file), and poppler's
`pdfsig` with an NSS trust store made here. A file altered after signing is reported altered by both."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from demo_rp.contract import contract_pdf
from demo_rp.pades import PadesError, finish, prepare, validate
from devstack.http import LiveServer
from devstack.processes import free_port
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


@pytest.fixture
def rp(idp_service):
    return idp_service.services.clients.add("Example Shop", [REDIRECT])


@pytest.fixture
def signed_pdf(idp_service, rp, make_card, tmp_path) -> bytes:
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
    return finish(prepared, answer.json()["authorization_details"][0])


def _altered(pdf: bytes) -> bytes:
    position = pdf.index(b"teapot")
    return pdf[:position] + b"kettle" + pdf[position + 6:]


def test_pyhanko_finds_the_signature_intact_trusted_and_its_revocation_proved_in_the_file(signed_pdf, dev_ca):
    report = validate(signed_pdf, [dev_ca.signing.certificate])
    assert report.intact and report.trusted and report.revocation_embedded


def test_pyhanko_refuses_an_altered_file_and_a_foreign_root(signed_pdf, dev_ca):
    with pytest.raises(PadesError) as altered:
        validate(_altered(signed_pdf), [dev_ca.signing.certificate])
    assert altered.value.code == "signature_not_intact"
    with pytest.raises(PadesError) as foreign:
        validate(signed_pdf, [dev_ca.auth.certificate])  # the auth root never issues signing certificates
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


def test_the_file_carries_the_chain_and_the_ocsp_response(signed_pdf):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    dss = DocumentSecurityStore.read_dss(PdfFileReader(io.BytesIO(signed_pdf)))
    # the signer's certificate, the root, and the OCSP responder's certificate from the response
    assert len(list(dss.ocsps)) == 1 and len(list(dss.certs)) == 3
