"""A nonce response made from the pre-signed one: the few DER steps that need, and nothing else.

Why: a response with a nonce (RFC 9654) answers one request, so it must be signed for that request; but everything
in it except producedAt, the nonce and the signature is already in the pre-signed response for the same CertID form
(revocation/ocsp/responder.py), which is held in process and kept coherent with Redis. Re-signing that response's
ResponseData with a fresh producedAt and the nonce appended to its responseExtensions costs one signature and a few
byte copies; building it again through pyca/cryptography's OCSPResponseBuilder, after a status read from Redis,
cost about three times the signature (py-spy, bench/report.md).

What is kept from the pre-signed response, byte for byte: responderID, the SingleResponse (CertID, status,
thisUpdate, nextUpdate), any other response extension (the extended-revoke one), signatureAlgorithm and certs. So
the statement is the one the pre-signed response makes, now also dated and bound to the nonce (RFC 6960 §4.2.1).

The input is always our own DER, so anything unexpected in its structure is a bug, raised as ValueError (the
responder answers `internalError`); nothing here parses a client's bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

SEQUENCE, OCTET_STRING, BIT_STRING, ENUMERATED, OID, GENERALIZED_TIME = 0x30, 0x04, 0x03, 0x0A, 0x06, 0x18
EXPLICIT_0, EXPLICIT_1 = 0xA0, 0xA1
# id-pkix-ocsp-nonce, 1.3.6.1.5.5.7.48.1.2 (RFC 6960 §4.4.1), as its DER OBJECT IDENTIFIER
NONCE_OID = bytes.fromhex("06092b0601050507300102")


def encode(tag: int, content: bytes) -> bytes:
    """One DER TLV (single-octet tags only, which is every tag an OCSP response uses)."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + content


def elements(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int, int]]:
    """The TLVs laid end to end in data[start:end]: (tag, start of the TLV, start of its content, end)."""
    end = len(data) if end is None else end
    found = []
    while start < end:
        if start + 2 > end:
            raise ValueError("DER: truncated header")
        tag, first = data[start], data[start + 1]
        content = start + 2
        if first < 0x80:
            size = first
        else:
            count = first & 0x7F
            if not 1 <= count <= 4 or content + count > end:
                raise ValueError("DER: bad length")
            size = int.from_bytes(data[content:content + count], "big")
            content += count
        if content + size > end:
            raise ValueError("DER: content runs past its container")
        found.append((tag, start, content, content + size))
        start = content + size
    return found


def _inside(data: bytes, tag: int, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Content bounds of the one TLV in data[start:end], which must carry `tag`."""
    items = elements(data, start, end)
    if len(items) != 1 or items[0][0] != tag:
        raise ValueError(f"DER: expected a single element with tag {tag:#x}")
    return items[0][2], items[0][3]


def nonce_extension(nonce: bytes) -> bytes:
    """Extension { id-pkix-ocsp-nonce, not critical (DEFAULT, so absent), OCTET STRING { OCTET STRING nonce } }."""
    return encode(SEQUENCE, NONCE_OID + encode(OCTET_STRING, encode(OCTET_STRING, nonce)))


def generalized_time(moment: dt.datetime) -> bytes:
    """GeneralizedTime in whole seconds, UTC (RFC 5280 §4.1.2.5.2), formatted once per second."""
    global _LAST_TIME
    second = int(moment.timestamp())
    if _LAST_TIME[0] != second:
        text = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y%m%d%H%M%SZ").encode()
        _LAST_TIME = (second, encode(GENERALIZED_TIME, text))
    return _LAST_TIME[1]


_LAST_TIME: tuple[int, bytes] = (-1, b"")


class NonceTemplate:
    """A successful pre-signed OCSPResponse taken apart once, so that each nonce answer made from it is a few byte
    joins and one signature (`sign`); `from_response` raises ValueError for anything but our own such response."""

    def __init__(self, before_time: bytes, after_time: bytes, extensions: list[bytes], algorithm: bytes,
                 certs: bytes, response_type: bytes, status: bytes):
        self.before_time, self.after_time, self.extensions = before_time, after_time, extensions
        self.algorithm, self.certs, self.response_type, self.status = algorithm, certs, response_type, status

    @classmethod
    def from_response(cls, presigned: bytes) -> NonceTemplate:
        # OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT ResponseBytes }
        start, end = _inside(presigned, SEQUENCE)
        status, response_bytes = elements(presigned, start, end)
        if status[0] != ENUMERATED or presigned[status[2]:status[3]] != b"\x00" or response_bytes[0] != EXPLICIT_0:
            raise ValueError("DER: not a successful OCSPResponse")
        # ResponseBytes ::= SEQUENCE { responseType OBJECT IDENTIFIER, response OCTET STRING (BasicOCSPResponse) }
        start, end = _inside(presigned, SEQUENCE, response_bytes[2], response_bytes[3])
        response_type, basic = elements(presigned, start, end)
        if basic[0] != OCTET_STRING:
            raise ValueError("DER: ResponseBytes without its response")
        # BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING, certs [0] }
        start, end = _inside(presigned, SEQUENCE, basic[2], basic[3])
        parts = elements(presigned, start, end)
        if len(parts) < 3 or parts[0][0] != SEQUENCE or parts[2][0] != BIT_STRING:
            raise ValueError("DER: not a BasicOCSPResponse")
        tbs, algorithm = parts[0], parts[1]
        certs = presigned[parts[3][1]:end] if len(parts) > 3 else b""
        # ResponseData ::= SEQUENCE { version [0] DEFAULT v1, responderID, producedAt, responses, responseExtensions }
        before, after, extensions, dated = [], [], [], False
        for tag, first, content, last in elements(presigned, tbs[2], tbs[3]):
            if tag == GENERALIZED_TIME and not dated:
                dated = True
            elif tag == EXPLICIT_1 and dated:  # before producedAt, [1] is a responderID byName
                inner = _inside(presigned, SEQUENCE, content, last)
                extensions = [presigned[item[1]:item[3]] for item in elements(presigned, *inner)
                              if not presigned[item[2]:item[3]].startswith(NONCE_OID)]
            else:
                (after if dated else before).append(presigned[first:last])
        if not dated:
            raise ValueError("DER: ResponseData without producedAt")
        return cls(b"".join(before), b"".join(after), extensions, presigned[algorithm[1]:algorithm[3]], certs,
                   presigned[response_type[1]:response_type[3]], presigned[status[1]:status[3]])

    def sign(self, nonce: bytes, produced_at: dt.datetime, sign: Callable[[bytes], bytes]) -> bytes:
        """The response dated `produced_at`, with `nonce` echoed, signed by `sign` (which must sign with the key
        and algorithm that signed the pre-signed response: its signatureAlgorithm is kept)."""
        extensions = encode(EXPLICIT_1, encode(SEQUENCE, b"".join((*self.extensions, nonce_extension(nonce)))))
        data = encode(SEQUENCE, self.before_time + generalized_time(produced_at) + self.after_time + extensions)
        signed = encode(SEQUENCE, data + self.algorithm + encode(BIT_STRING, b"\x00" + sign(data)) + self.certs)
        body = encode(SEQUENCE, self.response_type + encode(OCTET_STRING, signed))
        return encode(SEQUENCE, self.status + encode(EXPLICIT_0, body))


def with_nonce(presigned: bytes, nonce: bytes, produced_at: dt.datetime, sign: Callable[[bytes], bytes]) -> bytes:
    """The successful OCSPResponse `presigned`, dated `produced_at`, with `nonce` echoed, signed again by `sign`."""
    return NonceTemplate.from_response(presigned).sign(nonce, produced_at, sign)
