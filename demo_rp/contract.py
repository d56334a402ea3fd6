"""The contract Example Shop asks its customer to sign: a one-page PDF made here, with no library.

A PDF is a few numbered objects and a cross-reference table of their byte offsets (ISO 32000-1 §7.5); a single page
of Helvetica text needs five objects. Text is ASCII only (the standard 14 fonts carry no Japanese glyphs), which a
contract's English text is.
"""

from __future__ import annotations


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def contract_pdf(title: str, lines: list[str]) -> bytes:
    if not all(c.isascii() for c in title + "".join(lines)):
        raise ValueError("the standard PDF fonts used here take ASCII text only")
    text = [f"BT /F1 18 Tf 72 760 Td ({_escape(title)}) Tj ET"]
    text += [f"BT /F1 11 Tf 72 {724 - 16 * i} Td ({_escape(line)}) Tj ET" for i, line in enumerate(lines)]
    stream = "\n".join(text).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
