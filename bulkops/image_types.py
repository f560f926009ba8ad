"""What kind of image a body is, told by its first bytes, never by what the server said.

A downloaded body is stored as a product image only when its bytes begin the way one of
the kinds below begins; a Content-Type header is a claim (an error page answers 200 with
`image/png` as often as not). SVG is not among them: it is a document that can carry
scripts, and stored images are served from the API's own origin."""

from __future__ import annotations

from dataclasses import dataclass

# How many leading bytes `sniff_image` reads at most.
SNIFF_BYTES = 64


@dataclass(frozen=True)
class ImageType:
    """A kind of image: its media type and the file extension it is stored under (the
    file route names its Content-Type from it)."""

    content_type: str
    extension: str


JPEG = ImageType("image/jpeg", "jpg")
PNG = ImageType("image/png", "png")
GIF = ImageType("image/gif", "gif")
WEBP = ImageType("image/webp", "webp")
AVIF = ImageType("image/avif", "avif")
HEIC = ImageType("image/heic", "heic")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# ISO base media files (AVIF, HEIC) name their brands in the `ftyp` box that opens them.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def sniff_image(data: bytes) -> ImageType | None:
    """The image kind `data` starts as (JPEG, PNG, GIF, WebP, AVIF or HEIC), or None for
    anything else: HTML, text, JSON, SVG, an empty body, a truncated header."""
    head = data[:SNIFF_BYTES]
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 13:
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:15] == b"VP8":
        return WEBP
    return _iso_image(data)


def _iso_image(data: bytes) -> ImageType | None:
    """AVIF or HEIC by the brands of the opening `ftyp` box (major, then compatible)."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return None
    size = int.from_bytes(data[:4], "big")
    if not 16 <= size <= min(len(data), 4096):
        return None
    brands = {data[8:12]}
    brands.update(data[offset : offset + 4] for offset in range(16, size - 3, 4))
    if brands & _AVIF_BRANDS:
        return AVIF
    if brands & _HEIC_BRANDS:
        return HEIC
    return None
