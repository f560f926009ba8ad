"""An image is told by its bytes: real JPEG, PNG, GIF and WebP files are images, whatever
they are called; HTML, text, JSON, SVG, empty and truncated bodies are not."""

from __future__ import annotations

import pytest

from bulkops.image_types import AVIF, GIF, HEIC, JPEG, PNG, WEBP, ImageType, sniff_image
from tests import image_server


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    """The opening box of an ISO base media file, then some of its next box."""
    box = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(box)).to_bytes(4, "big") + b"ftyp" + box + b"\x00\x00\x00\x21meta"


IMAGES = [
    ("png", image_server.PNG, PNG),
    ("a larger png", image_server.png(640, 480), PNG),
    ("jpeg", image_server.JPEG, JPEG),
    ("gif", image_server.GIF, GIF),
    ("webp", image_server.WEBP, WEBP),
    ("avif", ftyp(b"avif", b"mif1", b"miaf"), AVIF),
    ("avif named by a compatible brand", ftyp(b"mif1", b"avif"), AVIF),
    ("heic", ftyp(b"heic", b"mif1"), HEIC),
]


@pytest.mark.parametrize(("data", "kind"), [i[1:] for i in IMAGES], ids=[i[0] for i in IMAGES])
def test_images_are_told_by_their_bytes(data: bytes, kind: ImageType) -> None:
    assert sniff_image(data) == kind


def test_each_kind_has_its_media_type_and_extension() -> None:
    assert [(k.content_type, k.extension) for k in (JPEG, PNG, GIF, WEBP)] == [
        ("image/jpeg", "jpg"),
        ("image/png", "png"),
        ("image/gif", "gif"),
        ("image/webp", "webp"),
    ]


NOT_IMAGES = [
    ("empty", b""),
    ("html", image_server.HTML),
    ("html with a byte order mark", b"\xef\xbb\xbf<html><body>hi</body></html>"),
    ("text", b"Service temporarily unavailable\n"),
    ("json", b'{"error": "not found"}'),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ("a pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
    ("a zip", b"PK\x03\x04\x14\x00\x00\x00"),
    ("a png signature alone", image_server.PNG[:8]),
    ("a gif signature alone", b"GIF89a"),
    ("riff that is not webp", b"RIFF\x24\x00\x00\x00WAVEfmt "),
    ("an mp4", ftyp(b"isom", b"iso2", b"mp41")),
    ("an ftyp box that claims more than there is", b"\x00\x00\xff\xffftypavif"),
    ("one byte of a jpeg", b"\xff"),
]


@pytest.mark.parametrize("data", [n[1] for n in NOT_IMAGES], ids=[n[0] for n in NOT_IMAGES])
def test_other_bodies_are_not_images(data: bytes) -> None:
    assert sniff_image(data) is None
