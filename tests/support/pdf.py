"""Hand-made PDF files for the tests: real cross-reference tables, any objects one wants."""

from __future__ import annotations

PAGE_OBJECTS = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
]


def make_pdf(
    objects: list[bytes] | None = None,
    *,
    catalog_extra: bytes = b"",
    padding: int = 0,
    streams: dict[int, bytes] | None = None,
) -> bytes:
    """A PDF with a catalog (object 1, plus *catalog_extra*), one page, then *objects* numbered
    from 4; *streams* gives object numbers whose body is a stream of those bytes; *padding*
    comment lines of 20 bytes make it bigger."""
    bodies = list(PAGE_OBJECTS)
    bodies[0] = bodies[0][:-2] + catalog_extra + b" >>"
    bodies += objects or []
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        data = (streams or {}).get(number)
        if data is not None:
            body = body[:-2] + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    out += b"% fiche de liaison.\n" * padding
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1,
        xref,
    )
    return bytes(out)
