import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from jpki.devca import new_rsa_key
from jpki.signature import DIGEST_INFO_LENGTH, digest_info_sha256, login_message, verify_signature


def test_digest_info_is_the_der_sha256_digest_info():
    info = digest_info_sha256(b"abc")
    assert len(info) == DIGEST_INFO_LENGTH == 51
    assert info.hex().startswith("3031300d060960864801650304020105000420")
    assert info[-32:] == hashlib.sha256(b"abc").digest()


def test_login_message_binds_origin_and_challenge():
    challenge = bytes(range(32))
    message = login_message("https://id.example.jp", challenge)
    assert message == hashlib.sha256(b"https://id.example.jp").digest() + hashlib.sha256(challenge).digest()
    assert message != login_message("https://evil.example", challenge)
    assert message != login_message("https://id.example.jp", bytes(32))


def test_verify_signature_accepts_pkcs1v15_sha256_and_nothing_else():
    key = new_rsa_key()
    message = login_message("https://id.example.jp", b"c" * 32)
    good = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    assert verify_signature(key.public_key(), message, good)
    assert not verify_signature(key.public_key(), message + b"x", good)
    pss = key.sign(message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert not verify_signature(key.public_key(), message, pss)
    assert not verify_signature(key.public_key(), message, b"\x00" * 256)
