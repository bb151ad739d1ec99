"""Re-write PNG and JPEG pictures as PNG from their decoded pixels alone, and check a written PNG chunk by chunk.

Only the pixels, palette and transparency are carried over; a written PNG may hold IHDR, PLTE, tRNS, IDAT and IEND
and nothing else, with an image data stream of exactly the size its header implies.
"""

import struct
import warnings
import zlib
from pathlib import Path

from PIL import Image

from crossmed.deid.image_limits import INFLATE_STEP, check_pixel_count
from crossmed.errors import InputError

# Camera JPEGs open as MPO; anything else behind a .png/.jpg name is a parser we do not want to expose.
PICTURE_FORMATS = ("PNG", "JPEG", "MPO")
# Pillow writes these modes to PNG unchanged; others are converted (CMYK -> RGB) or refused.
PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}
TRANSPARENCY_MODES = {"1", "L", "I;16", "RGB", "P"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_ALLOWED_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by IHDR colour type


def rewrite_picture(source: Path, tmp: Path, max_pixels: int) -> None:
    """Decode `source` and write its pixels, palette and transparency alone as PNG to `tmp`, verified by re-reading."""
    picture = _decode_picture(source, max_pixels)
    fresh, transparency = _pixels_only(source, picture)
    options = {} if transparency is None else {"transparency": transparency}
    fresh.save(tmp, format="PNG", **options)
    with Image.open(tmp, formats=["PNG"]) as written:
        if not _same_pipeline_reads(picture, written):
            raise InputError(source, "re-written pixels differ from the original (please report this image)")


def _decode_picture(source: Path, max_pixels: int) -> Image.Image:
    """Open and decode `source`, refusing it when its header declares more than `max_pixels` or decoding fails."""
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a refusal is what we want.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(source, formats=PICTURE_FORMATS) as picture:
                check_pixel_count(source, picture.size, max_pixels)
                picture.load()
                return picture
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise InputError(source, f"refused as a possible decompression bomb ({err})") from err
        except Exception as err:  # Pillow raises many kinds for damaged files
            raise InputError(source, f"unreadable image ({type(err).__name__}: {err})") from err



def _pixels_only(source: Path, picture: Image.Image) -> tuple[Image.Image, object]:
    """Return a new image holding only the pixels (and palette) of `picture`, and its transparency if any."""
    mode = _png_mode(source, picture)
    decoded = picture if mode == picture.mode else picture.convert(mode)
    # A new image starts with an empty info dict: Pillow's PNG writer copies icc_profile etc. from info.
    fresh = Image.frombytes(mode, decoded.size, decoded.tobytes())
    if mode == "P":
        fresh.putpalette(decoded.getpalette("RGB"), "RGB")
    transparency = picture.info.get("transparency") if mode == picture.mode and mode in TRANSPARENCY_MODES else None
    return fresh, transparency


def _png_mode(source: Path, picture: Image.Image) -> str:
    """Return the PNG mode that stores `picture` losslessly: its own, 16-bit for in-range 'I', RGB for CMYK/YCbCr."""
    if picture.mode in PNG_MODES:
        return picture.mode
    if picture.mode == "I":  # Pillow < 11 opens 16-bit grayscale PNG as 'I'
        low, high = picture.getextrema()
        if 0 <= low and high <= 0xFFFF:
            return "I;16"
    elif len(picture.getbands()) >= 3:
        return "RGB"  # the pipeline reads RGB or L, both derived from RGB; verified after writing
    raise InputError(source, f"pixel mode {picture.mode} has no lossless PNG form")


def _same_pipeline_reads(original: Image.Image, written: Image.Image) -> bool:
    """True when the pipeline's reads (convert to 'L' and to 'RGB') of both images are identical."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # palette transparency as bytes: irrelevant to L and RGB
        return all(original.size == written.size and
                   original.convert(mode).tobytes() == written.convert(mode).tobytes() for mode in ("L", "RGB"))


def png_problems(path: Path) -> list[str]:
    """Parse the PNG chunk list of `path` by hand and list chunks, data or structure beyond the pixels."""
    problems = []
    with open(path, "rb") as fh:
        if fh.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return ["not a PNG file (bad signature)"]
        chunks = _png_chunks(fh, problems)
        header, idat_ok = None, False
        inflater, inflated = zlib.decompressobj(), 0
        for index, (ctype, data) in enumerate(chunks):
            if ctype not in PNG_ALLOWED_CHUNKS:
                problems.append(f"PNG chunk {ctype.decode('latin-1')!r} is not allowed")
            elif ctype == b"IHDR":
                header = _ihdr_problems(data, index, problems)
            elif ctype == b"IDAT":
                idat_ok = True
                inflated += _inflated_size(inflater, data)
            elif ctype == b"IEND":
                if fh.read(1):
                    problems.append("bytes after the IEND chunk")
                break
        else:
            problems.append("no IEND chunk")
    problems += _idat_problems(header, idat_ok, inflater, inflated)
    return problems


def _png_chunks(fh, problems: list[str]):
    """Yield (type, data) of each chunk from `fh` (after the signature); note truncation and bad CRCs."""
    while head := fh.read(8):
        if len(head) < 8:
            problems.append("truncated PNG chunk header")
            return
        length, ctype = struct.unpack(">I4s", head)
        data, crc = fh.read(length), fh.read(4)
        if len(data) < length or len(crc) < 4:
            problems.append(f"PNG chunk {ctype.decode('latin-1')!r} is truncated")
            return
        if zlib.crc32(ctype + data) != int.from_bytes(crc, "big"):
            problems.append(f"PNG chunk {ctype.decode('latin-1')!r} has a bad CRC")
        yield ctype, data


def _ihdr_problems(data: bytes, index: int, problems: list[str]) -> tuple[int, int] | None:
    """Check IHDR; return (height, bytes per filtered row) for a non-interlaced image, else None."""
    if index != 0 or len(data) != 13:
        problems.append("IHDR is not the first chunk or not 13 bytes")
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data)
    if colour not in PNG_CHANNELS or compression or filtering:
        problems.append(f"IHDR colour type {colour} / methods {compression},{filtering} not expected")
        return None
    if interlace:  # never written here; the size check below assumes a single pass
        problems.append("interlaced PNG not expected")
        return None
    return height, 1 + (width * PNG_CHANNELS[colour] * depth + 7) // 8


def _inflated_size(inflater, data: bytes) -> int:
    """Feed `data` to `inflater` in bounded steps (a small IDAT can inflate hugely); return the bytes produced."""
    total = 0
    while data:
        total += len(inflater.decompress(data, INFLATE_STEP))
        data = inflater.unconsumed_tail
    return total


def _idat_problems(header, idat_ok: bool, inflater, inflated: int) -> list[str]:
    """List problems with the image data stream: missing, incomplete, followed by hidden bytes, or the wrong size."""
    if not idat_ok:
        return ["no IDAT chunk"]
    problems = [] if inflater.eof else ["image data stream is incomplete"]
    if inflater.unused_data:
        problems.append(f"{len(inflater.unused_data)} bytes after the image data stream")
    if header is not None and inflated != header[0] * header[1]:
        problems.append(f"image data is {inflated} bytes; IHDR implies {header[0] * header[1]}")
    return problems

