"""ZIP archives: structure, limits, and every member checked on its content as it streams by."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator

import pytest

import portal.filecheck.zip as zip_module
from portal.filecheck import (
    HEAD_SIZE,
    MAX_ZIP_RATIO,
    TAIL_SIZE,
    FileKind,
    Refusal,
    TypeSniffer,
    sniff,
)
from tests.filecheck.samples import (
    CHUNKINGS,
    CSV_UTF8,
    HTML_SCRIPT,
    JPEG,
    MZ_PE,
    PDF,
    SVG_SCRIPT,
    TXT,
    MiB,
    Unseekable,
    check,
    docx,
    patch_central,
    streamed_zip,
    zip_of,
)


def test_zip_larger_than_the_tail_buffer_is_read_from_the_tail() -> None:
    big = random.Random(1).randbytes(300_000)
    data = zip_of(("annexe.pdf", PDF + big), ("suivi.csv", CSV_UTF8), stored=True)

    for tail_size in (5_000, 70_001, 131_072):
        assert check("dossier.zip", data, tail_size=tail_size).kind is FileKind.ZIP


def test_zip64_archive_with_zip64_member_headers_is_accepted() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("lettre.pdf", "w", force_zip64=True) as member:
            member.write(PDF)
        with archive.open("suivi.csv", "w", force_zip64=True) as member:
            member.write(CSV_UTF8)

    assert check("dossier.zip", buffer.getvalue()).kind is FileKind.ZIP


def test_zip64_archive_with_zip64_end_records_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given limits lowered so that zipfile writes ZIP64 extra fields and end records
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    data = zip_of(("lettre.pdf", PDF), ("suivi.csv", CSV_UTF8), ("scan.jpg", JPEG))
    monkeypatch.undo()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    assert len(zipfile.ZipFile(io.BytesIO(data)).namelist()) == 3

    # When it is checked, Then it is accepted
    assert check("dossier.zip", data).kind is FileKind.ZIP


def test_zip_with_data_descriptors_is_accepted() -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override] # bytes are all it gets
            self.data += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("lettre.pdf", PDF)
        archive.writestr("suivi.csv", CSV_UTF8)
    data = bytes(sink.data)
    assert data[6] & 0x08  # bit 3: sizes follow the data

    assert check("dossier.zip", data).kind is FileKind.ZIP


def test_zip_with_a_comment_that_mimics_an_end_record_is_accepted() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lettre.pdf", PDF)
        archive.comment = b"PK\x05\x06" + bytes(30) + b"fin"

    assert check("dossier.zip", buffer.getvalue()).kind is FileKind.ZIP


def test_zip_with_desktop_metadata_files_is_accepted() -> None:
    data = zip_of(
        ("dossier/lettre.pdf", PDF),
        ("dossier/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("__MACOSX/dossier/._lettre.pdf", b"\x00\x05\x16\x07"),
        ("dossier/Thumbs.db", b"\xd0\xcf\x11\xe0"),
    )

    assert check("dossier.zip", data).kind is FileKind.ZIP


def test_zip_member_that_is_a_symbolic_link_is_refused() -> None:
    # A link's data is its target, text: named as text, only the link itself is refused.
    link = zipfile.ZipInfo("notes.txt")
    link.create_system = 3
    link.external_attr = 0o120777 << 16

    assert check("dossier.zip", zip_of((link, b"/etc/passwd"))).reason is (
        Refusal.ZIP_PATH_TRAVERSAL
    )


@pytest.mark.parametrize(
    ("alias", "reason"),
    [("../../lettre.pdf", Refusal.ZIP_PATH_TRAVERSAL), ("setup.exe", Refusal.ZIP_MEMBER_REFUSED)],
)
def test_zip_member_unicode_path_alias_is_checked_too(alias: str, reason: Refusal) -> None:
    # Given a member named "lettre.pdf" whose Info-ZIP Unicode Path field says otherwise
    member = zipfile.ZipInfo("lettre.pdf")
    body = b"\x01" + struct.pack("<I", zlib.crc32(b"lettre.pdf")) + alias.encode()
    member.extra = struct.pack("<HH", 0x7075, len(body)) + body

    # When the archive is checked, Then the alias is judged like the name
    assert check("dossier.zip", zip_of((member, PDF))).reason is reason


def test_zip_with_overlapping_members_is_refused() -> None:
    # Given the second member pointing at the first one's data (the overlap zip bomb)
    data = zip_of(("a.txt", TXT), ("b.txt", TXT))
    data = patch_central(data, 1, 42, struct.pack("<I", 0))

    assert check("dossier.zip", data).reason is Refusal.ZIP_INVALID


def test_zip_with_two_members_of_one_name_is_refused() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zip_of(("lettre.pdf", PDF), ("lettre.pdf", PDF.replace(b"1.7", b"1.6")))

    assert check("dossier.zip", data).reason is Refusal.ZIP_INVALID


def test_zip_whose_central_directory_exceeds_the_tail_buffer_is_too_complex() -> None:
    data = zip_of(*[(f"pieces/justificatif-{i:04d}.pdf", PDF) for i in range(300)])

    assert check("dossier.zip", data).kind is FileKind.ZIP
    assert check("dossier.zip", data, tail_size=4096).reason is Refusal.ZIP_TOO_COMPLEX


def test_zip_with_too_many_members_is_too_complex() -> None:
    data = zip_of(*[(f"p{i}.txt", TXT) for i in range(6)])

    assert check("dossier.zip", data, max_zip_members=6).ok
    assert check("dossier.zip", data, max_zip_members=5).reason is Refusal.ZIP_TOO_COMPLEX


def test_zip_that_expands_beyond_the_limit_is_too_complex() -> None:
    data = zip_of(("zeros.txt", b"0" * 1_000_000))

    assert len(data) < 10_000
    assert check("dossier.zip", data, max_zip_uncompressed=999_999).reason is (
        Refusal.ZIP_TOO_COMPLEX
    )


def test_split_zip_archive_is_too_complex() -> None:
    data = zip_of(("lettre.pdf", PDF))
    eocd = data.rindex(b"PK\x05\x06")
    data = data[: eocd + 4] + struct.pack("<H", 1) + data[eocd + 6 :]  # "this is disk 1"

    assert check("dossier.zip", data).reason is Refusal.ZIP_TOO_COMPLEX


# --- members of a plain archive, checked on their content ----------------------------

BAD_MEMBERS = [
    ("setup.pdf", MZ_PE),
    ("page.txt", HTML_SCRIPT),
    ("page.pdf", HTML_SCRIPT),
    ("i.xml", SVG_SCRIPT),
    ("annexe.pdf", zip_of(("setup.pdf", MZ_PE))),  # an archive disguised as a PDF
    ("annexe.docx", zip_of(("setup.pdf", MZ_PE))),  # ... or as an office document
    ("courrier.docx", docx(("word/vbaProject.bin", b"\xd0\xcf\x11\xe0"))),
    ("scan.jpg", PDF),
]


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(("name", "data"), BAD_MEMBERS, ids=[n for n, _ in BAD_MEMBERS])
def test_zip_member_is_refused_as_the_same_bytes_are_on_their_own(
    name: str, data: bytes, chunking: str
) -> None:
    # Given bytes refused as a file on their own, as the second file of an archive
    alone = check(name, data)
    assert not alone.ok and alone.reason is not None
    member_name = f"Dupont Jean/{name}"
    for stored in (False, True):
        archive = zip_of(
            ("lettre.pdf", PDF), ("Dupont Jean/", b""), (member_name, data), stored=stored
        )

        # When the archive is checked
        result = check("dossier.zip", archive, chunking)

        # Then it is refused for that member, by its position, for the same reason
        assert result.reason is Refusal.ZIP_MEMBER_REFUSED
        assert (result.member_position, result.member_reason) == (2, alone.reason)
        assert result.message_fr == (
            "Archive ZIP refusée : le fichier n° 2 qu'elle contient est refusé. " + alone.message_fr
        )
        assert "Dupont" not in result.message_fr


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("zip64", [False, True])
def test_members_written_as_a_stream_are_checked_too(compression: int, zip64: bool) -> None:
    # Given archives written with data descriptors: no size before the data
    good = streamed_zip(
        ("lettre.pdf", PDF), ("vide.txt", b""), ("rapport.docx", docx()), ("suivi.csv", CSV_UTF8),
        compression=compression, zip64=zip64,
    )  # fmt: skip
    bad = streamed_zip(
        ("lettre.pdf", PDF), ("vide.txt", b""), ("page.txt", HTML_SCRIPT), ("suivi.csv", CSV_UTF8),
        compression=compression, zip64=zip64,
    )  # fmt: skip
    assert good[6] & 0x08

    for chunking in CHUNKINGS:
        assert check("dossier.zip", good, chunking).kind is FileKind.ZIP
        refused = check("dossier.zip", bad, chunking)
        assert (refused.member_position, refused.member_reason) == (3, Refusal.ACTIVE_CONTENT)


def test_stored_member_holding_a_forged_descriptor_is_refused() -> None:
    # Given a stored member whose data ends with what looks like its own data descriptor
    head = b"a;b\n1;2\n"
    forged = head + b"PK\x07\x08" + struct.pack("<III", zlib.crc32(head), len(head), len(head))
    data = streamed_zip(("suivi.csv", forged + b"PK\x03\x04" + TXT), compression=0)

    # When checked, Then the walk ends the member early and disagrees with the directory
    assert check("dossier.zip", data).reason is Refusal.ZIP_INVALID


def test_empty_members_and_folders_are_not_refused() -> None:
    data = zip_of(("vide.pdf", b""), ("dossier/", b""), ("dossier/lettre.pdf", PDF))

    assert check("dossier.zip", data).kind is FileKind.ZIP


def test_refused_member_stops_the_upload_before_the_rest_of_the_archive() -> None:
    # Given a bad first member followed by 4 MiB of a good one
    big = PDF + random.Random(2).randbytes(4 * MiB)
    data = zip_of(("page.txt", HTML_SCRIPT), ("annexe.pdf", big), stored=True)
    consumed = 0

    def stream() -> Iterator[bytes]:
        nonlocal consumed
        for at in range(0, len(data), 64 * 1024):
            consumed += 1
            yield data[at : at + 64 * 1024]

    # When it is checked as it streams, Then the refusal comes with the first chunk
    result = sniff("dossier.zip", stream())
    assert result.member_reason is Refusal.ACTIVE_CONTENT
    assert consumed == 1


def test_zip_bomb_is_refused_after_a_bounded_amount_of_inflating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 64 MiB of text deflated to 64 KiB, and a count of the bytes inflated
    data = zip_of(("suivi.csv", b"a;b\n" * (16 * MiB)))
    assert len(data) < 100 * 1024
    inflated = 0
    real_check = zip_module.MemberWalk._check

    def counting(self: zip_module.MemberWalk, member: object, out: bytes) -> None:
        nonlocal inflated
        inflated += len(out)
        real_check(self, member, out)  # type: ignore[arg-type] # the walk's own member

    monkeypatch.setattr(zip_module.MemberWalk, "_check", counting)

    # When it is checked, Then it is refused once the ratio is exceeded, not at the end
    assert check("dossier.zip", data).reason is Refusal.ZIP_TOO_COMPLEX
    bound = zip_module._ZIP_RATIO_ALLOWANCE + MAX_ZIP_RATIO * len(data)
    assert inflated <= bound + zip_module._INFLATE_CHUNK
    assert inflated < 32 * MiB
    # And a looser ratio lets it through: the ratio is what refused it
    monkeypatch.undo()
    assert check("dossier.zip", data, max_zip_ratio=2000).kind is FileKind.ZIP


def test_members_are_counted_as_they_stream_by() -> None:
    data = zip_of(*[(f"p{i}.txt", TXT) for i in range(6)])
    sniffer = TypeSniffer("dossier.zip", max_zip_members=5)
    sniffer.feed(data[: data.index(b"PK\x01\x02")])  # the local headers only

    verdict = sniffer.early_verdict()
    assert verdict is not None and verdict.reason is Refusal.ZIP_TOO_COMPLEX


def test_32_mib_deflated_member_is_checked_in_bounded_memory() -> None:
    # Given an archive streamed as it is written: 32 MiB of CSV lines in one member
    rng = random.Random(5)
    block = b"".join(
        b"%d;Dupont;%d,%02d\n" % (rng.randrange(10**12), i, i % 100) for i in range(40_000)
    )

    def archive() -> Iterator[bytes]:
        sink = Unseekable()
        with (
            zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as out,
            out.open("suivi.csv", "w") as member,
        ):
            for _ in range(32 * MiB // len(block)):
                member.write(block)
                yield bytes(sink.data)
                sink.data.clear()
        yield bytes(sink.data)

    tracemalloc.start()
    try:
        sniffer = TypeSniffer("dossier.zip")
        held = 0
        for chunk in archive():
            sniffer.feed(chunk)
            held = max(held, sniffer.buffered_bytes)
        result = sniffer.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.kind is FileKind.ZIP
    assert held <= TAIL_SIZE + 2 * HEAD_SIZE
    assert peak < 8 * MiB


@pytest.mark.parametrize("stored", [False, True])
def test_a_pdf_member_with_active_content_refuses_its_archive(stored: bool) -> None:
    from tests.support.pdf import make_pdf

    scripted = make_pdf(catalog_extra=b" /OpenAction << /S /JavaScript /JS (app.alert(1)) >>")
    remote = make_pdf(catalog_extra=b" /AA << /WC << /S /GoToR /F (//evil/s/x.pdf) >> >>")
    for bad in (scripted, remote):
        data = zip_of(("lisez-moi.txt", TXT), ("fiche.pdf", bad), stored=stored)
        for chunking in CHUNKINGS:
            result = check("pieces.zip", data, chunking)
            assert not result.ok and result.reason is Refusal.ZIP_MEMBER_REFUSED
            assert result.member_position == 2 and "PDF refusé" in result.message_fr
    # A plain PDF member is still accepted
    assert check("pieces.zip", zip_of(("fiche.pdf", make_pdf()), stored=stored)).ok
