"""File names: made safe, sent back in `Content-Disposition`, and the extension checked."""

from __future__ import annotations

import email.message
import random

import pytest
from werkzeug.http import parse_options_header

from portal.filecheck import Refusal, content_disposition, safe_filename
from tests.filecheck.samples import PDF, check

# --- file names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rapport.pdf", "rapport.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\agent\\Documents\\lettre.pdf", "lettre.pdf"),
        ('a"b;c\r\nSet-Cookie: x', "a_b;c Set-Cookie_ x"),
        ("  mon   \t rapport \u00a0 final.pdf  ", "mon rapport final.pdf"),
        ("....", "fichier"),
        ("", "fichier"),
        (" . / .. ", "fichier"),
        ("\x00\x01\x7f", "fichier"),
        (".bashrc", "bashrc"),
        ("rapport.pdf. . ", "rapport.pdf"),
        ("re\u0301sume\u0301.pdf", "r\u00e9sum\u00e9.pdf"),
        ("facture\u202efdp.exe", "facturefdp.exe"),
        ("CON.pdf", "_CON.pdf"),
        ("a<b>c|d?e*f.pdf", "a_b_c_d_e_f.pdf"),
        ("rapport 📄 2024.pdf", "rapport 📄 2024.pdf"),
        ("bad\udcffsurrogate.pdf", "badsurrogate.pdf"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize("stem", ["a" * 1000, "é" * 400, "📄" * 300, "a" * 149])
def test_long_file_name_is_shortened_keeping_its_extension(stem: str) -> None:
    safe = safe_filename(stem + ".pdf")

    assert safe.endswith(".pdf") and len(safe) > 4
    assert len(safe) <= 150
    assert len(safe.encode()) <= 255


def test_content_disposition_of_a_hostile_name_cannot_be_broken() -> None:
    value = content_disposition('a"b;c\r\nSet-Cookie: x')

    assert value == (
        "attachment; filename=\"a_b_c Set-Cookie_ x\"; filename*=UTF-8''a_b%3Bc%20Set-Cookie_%20x"
    )


def test_content_disposition_gives_an_ascii_fallback_and_the_utf8_name() -> None:
    assert content_disposition("re\u0301sume\u0301 d'e\u0301te\u0301.pdf") == (
        'attachment; filename="resume d\'ete.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20d%27%C3%A9t%C3%A9.pdf"
    )
    assert content_disposition("📄📄.pdf").startswith('attachment; filename="fichier.pdf";')
    assert content_disposition("").startswith('attachment; filename="fichier";')


def test_content_disposition_round_trips_through_a_mime_parser() -> None:
    rng = random.Random(42)
    alphabet = "abcdéèçàœ ._-\"'\\/;:%*?<>|\r\n\t\x00\x1b\u202e\u200d\u00a0📄한글🇫🇷"
    for _ in range(300):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        value = content_disposition(name)
        safe = safe_filename(name)

        assert safe and len(safe) <= 150 and len(safe.encode()) <= 255
        assert safe_filename(safe) == safe  # the service stores the safe name and sniffs it
        assert not any(c in safe for c in "/\\\r\n\x00\x1b\u202e")
        assert "\r" not in value and "\n" not in value and value.isascii()
        # An RFC 6266 agent reads filename*; an old one reads only the quoted ASCII fallback.
        assert parse_options_header(value) == ("attachment", {"filename": safe})
        plain = value.split("; filename*=", 1)[0]
        _, options = parse_options_header(plain)
        assert options["filename"].isascii() and options["filename"].strip()
        assert not any(c in options["filename"] for c in '"\\;%')
        message = email.message.Message()
        message["Content-Disposition"] = plain
        assert message.get_filename() == options["filename"]


def test_declared_extension_is_read_from_the_safe_name() -> None:
    assert check("lettre.PDF. ", PDF).ok
    assert check("lettre\u202efdp.exe", PDF).reason is Refusal.TYPE_REFUSED
