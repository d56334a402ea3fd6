"""How long one CRL shard with a million entries takes to encode and sign (revocation/crl_der.py).

    .venv/bin/python -m bench.crl_build [entries]

Not part of the test suite (tests/test_crl.py builds ~20k entries). Prints seconds for encoding the entries,
for assembling and signing the CRL, and, as a check, for cryptography to parse it and verify its signature.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
import time

from cryptography import x509
from cryptography.x509 import ReasonFlags

from jpki.devca import DevCA
from revocation.crl_der import build_crl, encode_entries

REASONS = [ReasonFlags.cessation_of_operation, ReasonFlags.superseded, ReasonFlags.affiliation_changed,
           ReasonFlags.certificate_hold, ReasonFlags.key_compromise, None]


def main(count: int = 1_000_000) -> None:
    issuer = DevCA.generate().auth
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [(secrets.randbits(63) | 1, REASONS[i % len(REASONS)], start + dt.timedelta(seconds=i * 7))
            for i in range(count)]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    began = time.perf_counter()
    entries = encode_entries(rows)
    encoded = time.perf_counter()
    der = build_crl(issuer.certificate, issuer.key, entries, number=1, this_update=now,
                    next_update=now + dt.timedelta(days=1), distribution_point="http://127.0.0.1:8081/crl/auth/0.crl")
    built = time.perf_counter()

    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(issuer.certificate.public_key()) and len(crl) == count
    checked = time.perf_counter()

    print(f"{count} entries, {len(der) / 1e6:.1f} MB")
    print(f"encode entries  {encoded - began:6.2f} s")
    print(f"assemble + sign {built - encoded:6.2f} s")
    print(f"total build     {built - began:6.2f} s")
    print(f"(cryptography parse + verify {checked - built:.2f} s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
