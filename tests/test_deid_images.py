"""PHI planted in PNG, JPEG and NIfTI metadata is gone after re-writing; pixels, spacing and orientation are not."""

import gzip
import shutil
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from crossmed.data.image_files import read_image_file
from crossmed.deid import image_rewrite
from crossmed.deid.image_rewrite import metadata_problems, rewrite_image
from crossmed.errors import InputError

PHI = "Hong^Gildong 800101-1234567"
HANGUL = "홍길동"
NEEDLES = [s.encode(codec) for s in (PHI, HANGUL, "Gildong", "800101-1234567") for codec in ("utf-8", "utf-16-le",
                                                                                          "utf-16-be")]
ALLOWED_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
ICC = b"\0\0\2\0fake" + f"ICC profile of {PHI} {HANGUL}".encode() + b"\0" * 64
XMP = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       f'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="{PHI} {HANGUL}"/>'
       f'</rdf:RDF></x:xmpmeta>').encode()


def _exif() -> Image.Exif:
    """EXIF with PHI in ImageDescription, Artist and a UTF-16 UserComment, and a rotating Orientation."""
    exif = Image.Exif()
    exif[0x010E] = PHI  # ImageDescription
    exif[0x013B] = "Hong^Gildong"  # Artist
    exif[0x0112] = 6  # Orientation: applying it would rotate, so the pixels would change
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + f"{PHI} {HANGUL}".encode("utf-16-be")  # UserComment
    return exif


def _pixels(mode: str, size=(37, 23), seed=0) -> Image.Image:
    """A non-square image in `mode` with varied pixel values (palette and 16-bit included)."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (h, w)).astype(bool))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    if mode == "P":
        picture = Image.frombytes("P", (w, h), rng.integers(0, 16, (h, w), dtype=np.uint8).tobytes())
        picture.putpalette(rng.integers(0, 256, 48, dtype=np.uint8).tolist())
        return picture
    bands = Image.getmodebands(mode)
    shape = (h, w) if bands == 1 else (h, w, bands)
    return Image.frombytes(mode, (w, h), rng.integers(0, 256, shape, dtype=np.uint8).tobytes())


def _png_chunks(data: bytes) -> list[bytes]:
    """Chunk types of a PNG, parsed independently of the module under test."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, at = [], 8
    while at < len(data):
        length, ctype = struct.unpack(">I4s", data[at:at + 8])
        types.append(ctype)
        at += 12 + length
    return types


def _planted_png(path: Path, mode: str, transparency=None) -> Path:
    """Write a PNG in `mode` with PHI in tEXt, iTXt, zTXt, compressed XMP iTXt, eXIf, iCCP, a private chunk and
    after IEND."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", PHI)
    info.add_itxt("Description", f"{PHI} {HANGUL}")
    info.add_text("Comment", f"{PHI} {PHI}", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode(), zip=True)
    info.add(b"prVt", f"{PHI} {HANGUL}".encode())
    options = {"transparency": transparency} if transparency is not None else {}
    _pixels(mode).save(path, pnginfo=info, exif=_exif(), icc_profile=ICC, **options)
    path.write_bytes(path.read_bytes() + f"trailing {PHI}".encode())
    chunks = set(_png_chunks(path.read_bytes().split(b"IEND")[0] + b"IEND\xaeB`\x82"))
    assert {b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP", b"prVt"} <= chunks  # the planting worked
    return path


def _planted_jpeg(path: Path, mode: str) -> Path:
    """Write a JPEG in `mode` with PHI in EXIF, COM, XMP, ICC, a hand-made APP13 segment and after EOI."""
    _pixels(mode).save(path, quality=90, exif=_exif(), comment=f"{PHI} {HANGUL}".encode(), xmp=XMP, icc_profile=ICC)
    payload = b"Photoshop 3.0\0" + f"{PHI} {HANGUL}".encode()
    app13 = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    data = path.read_bytes()
    path.write_bytes(data[:2] + app13 + data[2:] + f"trailing {PHI}".encode())
    data = path.read_bytes()
    assert PHI.encode() in data and f"{PHI} {HANGUL}".encode("utf-16-be") in data and b"\xff\xfe" in data
    return path


def _assert_no_phi(data: bytes) -> None:
    """No planted string, in UTF-8 or UTF-16 either byte order, anywhere in `data`."""
    found = [needle for needle in NEEDLES if needle in data]
    assert not found, f"planted text survived: {found}"


def _assert_png_clean(out: Path) -> None:
    """No planted text in the bytes or the inflated image stream; only the allowed chunks; the checker agrees."""
    data = out.read_bytes()
    assert out.suffix == ".png"
    _assert_no_phi(data)
    chunks = _png_chunks(data)
    assert set(chunks) <= ALLOWED_CHUNKS and chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    with Image.open(out) as written:
        written.load()
        assert not (set(written.info) - {"transparency"}), written.info
    at, idat = 8, b""
    while at < len(data):
        length, ctype = struct.unpack(">I4s", data[at:at + 8])
        if ctype == b"IDAT":
            idat += data[at + 8:at + 8 + length]
        at += 12 + length
    _assert_no_phi(zlib.decompress(idat))
    assert metadata_problems(out) == []


def _assert_same_picture_reads(source: Path, out: Path) -> None:
    """The preprocess stage's reads ('L' and 'RGB') of the re-written file equal those of the original, exactly."""
    for channels in (1, 3):
        original, written = read_image_file(source, channels=channels), read_image_file(out, channels=channels)
        assert original.pixels.shape == written.pixels.shape
        assert np.array_equal(original.pixels, written.pixels), f"{channels}-channel read differs"
    for mode in ("L", "RGB"):
        with Image.open(source) as a, Image.open(out) as b:
            assert np.array_equal(np.asarray(a.convert(mode)), np.asarray(b.convert(mode)))


PNG_CASES = [("1", None), ("L", None), ("L", 7), ("LA", None), ("P", None), ("P", bytes([0, 64, 128, 255] * 4)),
             ("P", 3), ("RGB", None), ("RGB", (1, 2, 3)), ("RGBA", None), ("I;16", None), ("I;16", 1234)]


@pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning")  # Pillow, on convert()
@pytest.mark.parametrize(("mode", "transparency"), PNG_CASES, ids=[f"{m}-{t is not None}-{i}" for i, (m, t) in
                                                                     enumerate(PNG_CASES)])
def test_png_rewritten_from_pixels_alone(tmp_path, mode, transparency):
    source = _planted_png(tmp_path / "in.png", mode, transparency)
    out = rewrite_image(source, tmp_path / "out" / "image")
    assert out == tmp_path / "out" / "image.png"
    _assert_png_clean(out)
    _assert_same_picture_reads(source, out)
    with Image.open(source) as a, Image.open(out) as b:
        assert b.mode == a.mode and b.size == a.size  # kept, not converted or rotated
        assert np.array_equal(np.asarray(a), np.asarray(b))
        if mode == "P":
            assert a.getpalette() == b.getpalette()
        assert (a.info.get("transparency") is None) == (b.info.get("transparency") is None)
    assert sorted(p.name for p in out.parent.iterdir()) == ["image.png"]  # no temp file left behind


def _chunk(ctype: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def test_pngs_pillow_reduces_or_animates(tmp_path):
    """16-bit RGB (read as 8-bit RGB by Pillow) and an animated PNG: the pipeline's first-frame reads are kept."""
    rng = np.random.default_rng(5)
    rgb48 = rng.integers(0, 65536, (9, 11, 3)).astype(">u2")
    rows = b"".join(b"\0" + row.tobytes() for row in rgb48)
    deep = tmp_path / "deep.png"
    deep.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 11, 9, 16, 2, 0, 0, 0))
                     + _chunk(b"tEXt", f"Author\0{PHI}".encode()) + _chunk(b"IDAT", zlib.compress(rows))
                     + _chunk(b"IEND", b""))
    frames = [_pixels("RGB", seed=seed) for seed in range(3)]
    animated = tmp_path / "animated.png"
    frames[0].save(animated, save_all=True, append_images=frames[1:], pnginfo=_text_info())
    assert b"acTL" in animated.read_bytes()
    for source in (deep, animated):
        out = rewrite_image(source, tmp_path / "out" / source.stem)
        _assert_png_clean(out)
        _assert_same_picture_reads(source, out)


def _text_info() -> PngImagePlugin.PngInfo:
    """A PNG tEXt chunk holding PHI."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", PHI)
    return info


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg_rewritten_losslessly_as_png(tmp_path, mode):
    source = _planted_jpeg(tmp_path / "in.jpg", mode)
    with Image.open(source) as original:
        assert original.mode == mode and original.size == (37, 23)
    out = rewrite_image(source, tmp_path / "out" / "image")
    assert out.name == "image.png"
    _assert_png_clean(out)
    _assert_same_picture_reads(source, out)
    with Image.open(source) as a, Image.open(out) as b:
        assert b.size == a.size  # EXIF orientation 6 not applied
        assert b.mode == (mode if mode != "CMYK" else "RGB")
        assert np.array_equal(np.asarray(a if mode != "CMYK" else a.convert("RGB")), np.asarray(b))


def _planted_nifti(path: Path, version: int = 1, shape=(6, 5, 4), dtype=np.int16, endian="<") -> Path:
    """Write a NIfTI with PHI in descrip, aux_file, db_name, intent_name, data_type and a comment extension; it
    also has scaling, an oblique non-canonical affine, units and other values the pipeline does not need."""
    rng = np.random.default_rng(version)
    data = (rng.integers(-500, 1500, shape) if np.dtype(dtype).kind in "iu" else rng.normal(size=shape)).astype(dtype)
    angle = 0.3
    affine = np.array([[-0.7 * np.cos(angle), 0, 0.7 * np.sin(angle), 90.5], [0, -0.9, 0, 120.25],
                       [0.7 * np.sin(angle), 0, 0.7 * np.cos(angle), -70.0], [0, 0, 0, 1]]) @ np.diag([1, 1, 2.5, 1])
    image_class, header_class = ((nib.Nifti1Image, nib.Nifti1Header) if version == 1 else
                                 (nib.Nifti2Image, nib.Nifti2Header))
    header = header_class(endianness=endian)
    header.set_qform(affine, code=1)  # set on the header, not as the image affine: nibabel would drop the qform
    header.set_sform(affine + np.array([[0, 0, 0, 1.5], [0, 0, 0, -2], [0, 0, 0, 0], [0, 0, 0, 0]]), code=2)
    image = image_class(data, None, header)
    image.set_data_dtype(dtype)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    if np.dtype(dtype).kind in "iu":
        header.set_slope_inter(0.5, -12.0)
    header["descrip"] = f"{PHI} {HANGUL}".encode()
    header["aux_file"] = "800101-1234567".encode()
    header["intent_name"] = HANGUL.encode()
    if version == 1:
        header["db_name"] = b"Hong^Gildong"
        header["data_type"] = HANGUL.encode()
    header["cal_max"], header["cal_min"], header["toffset"], header["intent_code"] = 800101, 1, 3.5, 1
    header.set_dim_info(freq=0, phase=1, slice=2)
    header.extensions.append(nib.nifti1.Nifti1Extension(6, f"{PHI} {HANGUL}".encode()))
    image.to_filename(path)
    raw = path.read_bytes()
    content = gzip.decompress(raw) if path.name.endswith(".gz") else raw
    assert PHI.encode() in content and HANGUL.encode() in content  # the planting worked
    stored = nib.load(path)
    assert stored.get_data_dtype() == np.dtype(dtype).newbyteorder(endian)
    assert stored.dataobj.slope == (0.5 if np.dtype(dtype).kind in "iu" else 1.0)
    return path


def _assert_same_nifti_reads(source: Path, out: Path) -> None:
    """The preprocess stage's NIfTI read (canonical axes, float32 voxels, zooms) is identical for both files."""
    a, b = nib.as_closest_canonical(nib.load(source)), nib.as_closest_canonical(nib.load(out))
    assert np.array_equal(np.asarray(a.dataobj, dtype=np.float32), np.asarray(b.dataobj, dtype=np.float32))
    assert a.header.get_zooms() == b.header.get_zooms()
    assert np.array_equal(a.affine, b.affine)
    original, written = read_image_file(source, spatial_dims=3), read_image_file(out, spatial_dims=3)
    assert np.array_equal(original.pixels, written.pixels) and original.spacing_mm == written.spacing_mm


def _assert_nifti_clean(source: Path, out: Path) -> None:
    """No planted text in the file or its inflated content; empty text fields; no extensions; a bare gzip header."""
    data = out.read_bytes()
    assert out.name.endswith(".nii.gz")
    assert data[3] == 0 and data[4:8] == b"\0\0\0\0"  # no FNAME/FCOMMENT/FEXTRA, mtime 0
    content = gzip.decompress(data)
    _assert_no_phi(data)
    _assert_no_phi(content)
    header = nib.load(out).header
    for name in ("descrip", "aux_file", "intent_name", *(("db_name", "data_type") if "db_name" in
                                                        header.template_dtype.names else ())):
        assert header[name].tobytes().strip(b"\0") == b"", name
    assert len(header.extensions) == 0
    assert float(header["cal_max"]) == 0 and int(header["intent_code"]) == 0 and int(header["dim_info"]) == 0
    original = nib.load(source).header
    assert header.get_xyzt_units() == original.get_xyzt_units()
    for code in ("qform_code", "sform_code"):
        assert int(header[code]) == int(original[code])
    assert int(original["qform_code"]) == 1 and int(original["sform_code"]) == 2  # both kept, and they differ
    assert np.array_equal(header.get_qform(), original.get_qform())
    assert np.array_equal(header.get_sform(), original.get_sform())
    assert not np.allclose(header.get_qform(), header.get_sform())
    assert header.get_data_dtype().newbyteorder("=") == original.get_data_dtype().newbyteorder("=")
    assert metadata_problems(out) == []


NIFTI_CASES = {
    "nifti1-gz": dict(name="in.nii.gz"),
    "nifti1-plain": dict(name="in.nii"),
    "nifti1-4d-singleton": dict(name="in.nii.gz", shape=(6, 5, 4, 1)),
    "nifti1-float-big-endian": dict(name="in.nii", dtype=np.float32, endian=">"),
    "nifti2-gz": dict(name="in.nii.gz", version=2, dtype=np.float64),
}


@pytest.mark.parametrize("case", NIFTI_CASES)
def test_nifti_rewritten_with_a_fresh_header(tmp_path, case):
    options = dict(NIFTI_CASES[case])
    source = _planted_nifti(tmp_path / options.pop("name"), **options)
    out = rewrite_image(source, tmp_path / "out" / "volume")
    assert out == tmp_path / "out" / "volume.nii.gz"
    _assert_nifti_clean(source, out)
    _assert_same_nifti_reads(source, out)
    assert type(nib.load(out)) is type(nib.load(source))  # NIfTI-2 stays NIfTI-2: its float64 spacing is kept
    assert np.asanyarray(nib.load(out).dataobj.get_unscaled()).dtype.newbyteorder("=") == np.dtype(
        options.get("dtype", np.int16))
    assert sorted(p.name for p in out.parent.iterdir()) == ["volume.nii.gz"]


@pytest.mark.parametrize("make", [
    lambda d: _planted_png(d / "in.png", "P", bytes([0, 9])),
    lambda d: _planted_jpeg(d / "in.jpeg", "RGB"),
    lambda d: _planted_nifti(d / "in.nii.gz", shape=(6, 5, 4, 1)),
], ids=["png", "jpeg", "nifti"])
def test_rewrite_is_deterministic(tmp_path, make):
    source = make(tmp_path)
    first = rewrite_image(source, tmp_path / "a" / "x").read_bytes()
    copy = tmp_path / "elsewhere" / source.name
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    second = rewrite_image(copy, tmp_path / "b" / "y").read_bytes()
    assert first == second


def _refused(source: Path, target_dir: Path, match: str, **kwargs) -> InputError:
    """Assert rewrite_image refuses `source` with InputError naming it, and leaves nothing in `target_dir`."""
    with pytest.raises(InputError, match=match) as caught:
        rewrite_image(source, target_dir / "image", **kwargs)
    assert caught.value.path == str(source)
    assert not target_dir.exists() or list(target_dir.iterdir()) == []
    return caught.value


def _png_with_ihdr(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose IHDR is patched to declare `width` x `height` (CRC fixed)."""
    _pixels("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bombs_refused_before_decoding(tmp_path):
    bomb = _png_with_ihdr(tmp_path / "bomb.png", 30000, 30000)
    _refused(bomb, tmp_path / "out", "bomb|over the limit")
    # Between Pillow's MAX_IMAGE_PIXELS (89M) and twice that, Pillow only warns; under 2**27, so refused as a warning.
    _refused(_png_with_ihdr(tmp_path / "warned.png", 10000, 10000), tmp_path / "out", "decompression bomb")
    _refused(_png_with_ihdr(tmp_path / "wide.png", 9000, 9000), tmp_path / "out", "81000000 pixels .* over the limit",
             max_pixels=2**26)
    _pixels("RGB").save(tmp_path / "small.png")
    _refused(tmp_path / "small.png", tmp_path / "out", "851 pixels .* over the limit of 100", max_pixels=100)
    volume = _planted_nifti(tmp_path / "v.nii.gz")
    _refused(volume, tmp_path / "out", "120 pixels .* over the limit of 119", max_pixels=119)
    assert rewrite_image(volume, tmp_path / "ok" / "v", max_pixels=120).is_file()


def test_nifti_declaring_a_huge_volume_refused_before_reading(tmp_path):
    source = _planted_nifti(tmp_path / "v.nii")
    data = bytearray(source.read_bytes())
    data[40:56] = struct.pack("<8h", 3, 4000, 4000, 4000, 1, 1, 1, 1)  # dim: 64e9 voxels in a tiny file
    source.write_bytes(bytes(data))
    _refused(source, tmp_path / "out", "over the limit")


def test_corrupt_and_unexpected_files_refused(tmp_path):
    out = tmp_path / "out"
    png = _planted_png(tmp_path / "cut.png", "RGB")
    png.write_bytes(png.read_bytes()[:-300])
    _refused(png, out, "unreadable image")
    jpeg = _planted_jpeg(tmp_path / "cut.jpg", "RGB")
    jpeg.write_bytes(jpeg.read_bytes()[:len(jpeg.read_bytes()) // 2])
    _refused(jpeg, out, "unreadable image")
    (tmp_path / "noise.png").write_bytes(b"not an image at all " * 10)
    _refused(tmp_path / "noise.png", out, "unreadable image")
    _pixels("RGB").save(tmp_path / "really_a_bmp.png", format="BMP")  # a parser we do not expose
    _refused(tmp_path / "really_a_bmp.png", out, "unreadable image")
    (tmp_path / "noise.nii.gz").write_bytes(b"\x1f\x8b\x08\0garbage")
    _refused(tmp_path / "noise.nii.gz", out, "unreadable NIfTI|not a NIfTI")
    nii = _planted_nifti(tmp_path / "cut.nii")
    nii.write_bytes(nii.read_bytes()[:-10])
    _refused(nii, out, "declares .* bytes but the file has")
    niigz = _planted_nifti(tmp_path / "cut.nii.gz")
    niigz.write_bytes(gzip.compress(gzip.decompress(niigz.read_bytes())[:-10], mtime=0))
    _refused(niigz, out, "unreadable NIfTI")
    (tmp_path / "notes.txt").write_text(PHI)
    _refused(tmp_path / "notes.txt", out, "not a PNG, JPEG or NIfTI")
    _refused(tmp_path / "scan.dcm", out, "not a PNG, JPEG or NIfTI")
    _refused(tmp_path / "missing.png", out, "file not found")


def test_metadata_found_after_writing_refuses_and_leaves_nothing(tmp_path, monkeypatch):
    source = _planted_png(tmp_path / "in.png", "L")
    monkeypatch.setattr(image_rewrite, "metadata_problems", lambda path, kind=None: ["planted problem"])
    _refused(source, tmp_path / "out", "still holds metadata: planted problem")


def test_checker_flags_png_metadata(tmp_path):
    planted = _planted_png(tmp_path / "in.png", "RGB")
    problems = " | ".join(metadata_problems(planted))
    for what in ("'tEXt'", "'iTXt'", "'zTXt'", "'eXIf'", "'iCCP'", "'prVt'", "bytes after the IEND"):
        assert what in problems
    clean = rewrite_image(planted, tmp_path / "clean")
    data = clean.read_bytes()
    iend = data.rindex(b"IEND") - 4
    hidden = zlib.compress(PHI.encode())
    idat = struct.pack(">I", len(hidden)) + b"IDAT" + hidden + struct.pack(">I", zlib.crc32(b"IDAT" + hidden))
    (tmp_path / "extra_idat.png").write_bytes(data[:iend] + idat + data[iend:])
    assert any("after the image data stream" in p for p in metadata_problems(tmp_path / "extra_idat.png"))
    (tmp_path / "bad_crc.png").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert any("bad CRC" in p for p in metadata_problems(tmp_path / "bad_crc.png"))
    assert metadata_problems(tmp_path / "in.jpg") != []


def test_checker_flags_nifti_metadata(tmp_path):
    planted = _planted_nifti(tmp_path / "in.nii.gz")
    problems = " | ".join(metadata_problems(planted))
    for what in ("descrip", "aux_file", "db_name", "intent_name", "data_type", "extensions present", "cal_max",
                 "dim_info"):
        assert what in problems
    clean = rewrite_image(planted, tmp_path / "clean")
    content = gzip.decompress(clean.read_bytes())
    named = tmp_path / "named.nii.gz"
    with open(named, "wb") as fh, gzip.GzipFile(filename="Hong^Gildong.nii", mode="wb", fileobj=fh, mtime=1) as gz:
        gz.write(content)
    problems = " | ".join(metadata_problems(named))
    assert "file name (FNAME)" in problems and "modification time" in problems
    trailing = tmp_path / "trailing.nii.gz"
    trailing.write_bytes(clean.read_bytes() + gzip.compress(PHI.encode(), mtime=0))
    assert any("after the gzip stream" in p for p in metadata_problems(trailing))
    header = nib.Nifti1Header(content[:348])
    header["qform_code"] = 0  # its quaternion and offsets stay: unused numbers that could carry bytes
    stale = tmp_path / "stale.nii.gz"
    stale.write_bytes(gzip.compress(header.binaryblock + content[348:], mtime=0))
    assert metadata_problems(stale) == ["NIfTI qform_code is 0 but its fields are set"]
    padded = tmp_path / "padded.nii.gz"
    padded.write_bytes(gzip.compress(content + PHI.encode(), mtime=0))
    assert any("header implies" in p for p in metadata_problems(padded))
