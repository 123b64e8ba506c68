"""Reading inspection images and masks the same way everywhere (import, experts, GUI, export).

Every image comes out as (H, W, 3) uint8 RGB, whatever it was on disk: 16-bit is scaled
linearly (65535 -> 255, never stretched per image, so images stay comparable), gray is
repeated to three channels, RGBA is composited on black, and the EXIF orientation is
applied so that pixels, sizes and masks agree with what a person sees in a viewer.

Files are read into memory once and decoded from bytes: that lets the importer hash and
decode in one pass, and avoids OpenCV's trouble with non-ASCII paths on Windows. OpenCV
decodes (fast); Pillow reads the header (format, size, orientation) before any pixel is
decoded, so an oversized image is refused before it can fill the memory, and Pillow
decodes what OpenCV cannot.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from workstation.core.errors import UserError
from workstation.core.tempfiles import create_temp
from workstation.core.untrusted import limits

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LARGE_PIXELS = 50_000_000
"""Above this, validation decodes at reduced resolution to keep memory down."""
_ORIENTATION_TAG = 0x0112

# Pillow's own bomb guard has a fixed limit and only warns below twice it; ours is
# max_pixels(), checked in _header on every path (no other module opens image files).
Image.MAX_IMAGE_PIXELS = None



class ImageReadError(UserError):
    """An image or mask file cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class ProbedImage:
    """What the importer needs from a file: content hash and displayed size (after EXIF)."""

    path: Path
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class _Header:
    format: str
    width: int
    height: int
    orientation: int


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """File system errors while reading ``path`` as one-line :class:`ImageReadError`s."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ImageReadError(f"{path}: is a folder, not an image") from exc
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _read_bytes(path: Path) -> bytes:
    with _reading(path):
        data = Path(path).read_bytes()
    if not data:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")
    return data


def max_pixels() -> int:
    """Width x height above which an image or mask is refused at its header, before a
    pixel is decoded: the ``[limits] max_image_megapixels`` setting (one place, so
    every reader and the tiled viewer agree)."""
    return limits().image_pixels


def pixel_problem(width: int, height: int) -> str | None:
    """Why an image of this size is refused (None when it is within the limit)."""
    if width < 1 or height < 1:
        return f"{width}x{height} pixels is not an image size"
    if width * height > max_pixels():
        return f"{width}x{height} pixels {_too_large()}"
    return None


class _BufferFile(io.RawIOBase):
    """A read-only file over a buffer without copying it: ``io.BytesIO`` copies a
    bytearray, which doubled the memory of a header check on a large bundle member."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = max(0, min(len(buffer), len(self._view) - self._pos))
        buffer[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _header(data: bytes | bytearray, name: str) -> _Header:
    return _parse_header(_BufferFile(data), name, png_exif=b"eXIf" in data)


def _parse_header(source: IO[bytes], name: str, *, png_exif: bool) -> _Header:
    """The header of an open image file; ``png_exif``: a PNG holds an eXIf chunk."""
    try:
        with Image.open(source) as img:
            width, height = img.size
            orientation = 1
            # Pillow decodes a whole PNG to look for EXIF: only ask when the chunk exists.
            has_exif = img.format in ("JPEG", "TIFF") or (img.format == "PNG" and png_exif)
            if has_exif:
                try:
                    orientation = int(img.getexif().get(_ORIENTATION_TAG, 1) or 1)
                except Exception:  # a broken EXIF block must not hide a readable image
                    orientation = 1
            fmt = img.format or "?"
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{name}: not a readable image (corrupt or unknown format)") from exc
    except Image.DecompressionBombError as exc:  # its text quotes Pillow's own limit
        raise ImageReadError(f"{name}: the image {_too_large()}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        if "truncat" in str(exc).lower():
            raise ImageReadError(f"{name}: the file is truncated ({exc})") from exc
        raise ImageReadError(f"{name}: corrupt image header ({exc})") from exc
    problem = pixel_problem(width, height)
    if problem is not None:
        raise ImageReadError(f"{name}: {problem}")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return _Header(fmt, width, height, orientation)


def _too_large() -> str:
    return (
        f"is more than the limit of {max_pixels() / 1e6:g} megapixels; downscale or tile "
        "the image first, or raise [limits] max_image_megapixels in the settings"
    )


def _check_complete(data: bytes, header: _Header, name: str) -> None:
    """Decoders often return a grey-padded image for a cut-off file; catch that here."""
    if header.format == "JPEG" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise ImageReadError(f"{name}: the JPEG file is truncated (no end-of-image marker)")
    if header.format == "PNG" and b"IEND" not in data[-32:]:
        raise ImageReadError(f"{name}: the PNG file is truncated (no IEND chunk)")


def _decode_cv2(data: bytes, flags: int) -> np.ndarray | None:
    buffer = np.frombuffer(data, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cv2.imdecode(buffer, flags)
        except cv2.error:
            return None


def _decode_pillow(data: bytes, name: str) -> np.ndarray:
    """Full decode with Pillow, orientation applied; channels in RGB(A) order."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img)
                return array.astype(np.uint16) if array.dtype != np.uint16 else array
            if img.mode == "F":
                return np.asarray(img)
            if img.mode not in ("L", "RGB", "RGBA"):
                img = img.convert(
                    "RGBA" if "A" in img.mode or "transparency" in img.info else "RGB"
                )
            return np.asarray(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{name}: cannot decode the image ({exc})") from exc


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if array.dtype.kind == "f":
        values = np.nan_to_num(array.astype(np.float32))
        if values.size and float(values.max()) <= 1.0:
            values = values * 255.0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if array.dtype.kind in "iu":
        return np.clip(array, 0, 255).astype(np.uint8)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    raise ValueError(f"unsupported pixel type {array.dtype}")


def _to_rgb(array: np.ndarray, *, bgr: bool) -> np.ndarray:
    """Any decoded layout -> (H, W, 3) uint8 RGB."""
    array = _to_uint8(array)
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 2:  # gray + alpha
        gray = (array[:, :, 0].astype(np.uint16) * array[:, :, 1] + 127) // 255
        return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)
    if channels == 4:
        alpha = array[:, :, 3:4].astype(np.uint16)
        array = ((array[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    elif channels != 3:
        raise ValueError(f"unsupported channel count {channels}")
    if bgr:
        return np.ascontiguousarray(array[:, :, ::-1])
    return np.ascontiguousarray(array)


def decode_image(data: bytes, *, name: str = "image", max_side: int | None = None) -> np.ndarray:
    """Bytes of an image file -> (H, W, 3) uint8 RGB; see the module docstring."""
    if not data:
        raise ImageReadError(f"{name}: the file is empty (0 bytes)")
    header = _header(data, name)
    _check_complete(data, header, name)
    if header.orientation != 1:
        rgb = _to_rgb(_decode_pillow(data, name), bgr=False)
    else:
        flags = cv2.IMREAD_UNCHANGED
        if header.format == "JPEG" and max_side:
            flags = _reduced_jpeg_flag(max(header.width, header.height), max_side)
        decoded = _decode_cv2(data, flags)
        if decoded is None:
            rgb = _to_rgb(_decode_pillow(data, name), bgr=False)
        else:
            rgb = _to_rgb(decoded, bgr=True)
    if max_side and max(rgb.shape[:2]) > max_side:
        scale = max_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def _reduced_jpeg_flag(longest: int, max_side: int) -> int:
    for factor, flag in (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    ):
        if longest // factor >= max_side:
            return flag
    return cv2.IMREAD_COLOR


def read_image(path: Path | str, *, max_side: int | None = None) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB; ``max_side`` downsizes (cheaply for JPEG).

    Raises :class:`ImageReadError` naming the file and the reason for anything unusable.
    """
    path = Path(path)
    return decode_image(_read_bytes(path), name=str(path), max_side=max_side)


def _verify_png(data: bytes, name: str) -> None:
    """Check every chunk's CRC: catches corruption without inflating the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{name}: the PNG file is corrupt ({exc})") from exc


def probe_image(path: Path | str) -> ProbedImage:
    """Hash and validate an image file in one read, without converting its pixels.

    A truncated or corrupt file is caught here, at import, rather than later in a view.
    Validation is as cheap as each format allows: PNG chunk checksums (a tenth of a
    decode), JPEG decoded at 1/8 scale (the whole entropy stream is still read), other
    formats decoded in full. Very large images are decoded at reduced size.
    """
    path = Path(path)
    data = _read_bytes(path)
    sha = hashlib.sha256(data).hexdigest()
    name = str(path)
    header = _header(data, name)
    _check_complete(data, header, name)
    if header.format == "PNG" and header.orientation == 1:
        _verify_png(data, name)
    else:
        large = header.width * header.height > LARGE_PIXELS
        reduce = large or header.format == "JPEG"
        flags = cv2.IMREAD_REDUCED_GRAYSCALE_8 if reduce else cv2.IMREAD_UNCHANGED
        if header.orientation != 1 or _decode_cv2(data, flags) is None:
            _decode_pillow(data, name)
    return ProbedImage(path=path, sha256=sha, width=header.width, height=header.height)


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the header only."""
    path = Path(path)
    with open(path, "rb") as handle:
        data = handle.read()
    return header_size(data, name=str(path))


def stored_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of an image file from its header, reading only the header's bytes
    (Pillow opens lazily) and refused above :func:`max_pixels`: how a scan of gigabytes is
    measured, routed and perhaps refused before any of it is read. A PNG's EXIF
    orientation is not looked for (that needs the whole file): the size is as stored,
    which may be width and height swapped, the same number of pixels."""
    path = Path(path)
    with _reading(path), open(path, "rb") as handle:
        if not handle.read(1):
            raise ImageReadError(f"{path}: the file is empty (0 bytes)")
        handle.seek(0)
        header = _parse_header(handle, str(path), png_exif=False)
    return header.width, header.height


def header_size(data: bytes | bytearray, *, name: str = "image") -> tuple[int, int]:
    """(width, height) of an image file's bytes from its header, refused above
    :func:`max_pixels` before any pixel is decoded."""
    if not data:
        raise ImageReadError(f"{name}: the file is empty (0 bytes)")
    header = _header(data, name)
    return header.width, header.height


def read_mask_checked(
    path: Path | str, *, expected_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, str | None]:
    """Read a mask as uint8 0/1 plus a warning when the file was not cleanly binary.

    A mask with one or two distinct values is binary: any nonzero pixel is defect (this
    covers 0/1, 0/255 and 0/65535 files). More values (anti-aliased edges, a JPEG mask)
    are thresholded at half the value range, and the warning says so.
    ``expected_shape`` is (height, width) of the image; a different size is an error.
    """
    path = Path(path)
    data = _read_bytes(path)
    name = str(path)
    header = _header(data, name)
    _check_complete(data, header, name)
    if header.orientation != 1:
        raw = _decode_pillow(data, name)
    else:
        raw = _decode_cv2(data, cv2.IMREAD_UNCHANGED)
        if raw is None:
            raw = _decode_pillow(data, name)
    if raw.ndim == 3:
        raw = raw[:, :, :3].max(axis=2) if raw.shape[2] >= 3 else raw[:, :, 0]
    if expected_shape is not None and raw.shape[:2] != tuple(expected_shape):
        raise ImageReadError(
            f"{name}: the mask is {raw.shape[1]}x{raw.shape[0]} pixels but its image is "
            f"{expected_shape[1]}x{expected_shape[0]}"
        )
    values = np.unique(raw)
    if values.size <= 2:
        return (raw > 0).astype(np.uint8), None
    top = 1.0 if raw.dtype.kind == "f" else float(np.iinfo(raw.dtype).max)
    mask = (raw >= top / 2).astype(np.uint8)
    warning = (
        f"{name}: the mask is not binary ({values.size} grey levels); "
        f"pixels at or above half range count as defect"
    )
    return mask, warning


def read_mask(path: Path | str, *, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask as uint8 0/1 (see :func:`read_mask_checked` for the rules)."""
    return read_mask_checked(path, expected_shape=expected_shape)[0]


def encode_png(array: np.ndarray, *, compression: int = 3) -> bytes:
    """RGB / RGBA / gray array (uint8 or uint16) -> PNG bytes."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    ok, encoded = cv2.imencode(
        ".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, compression]
    )
    if not ok:
        raise ValueError(f"cannot encode an array of shape {array.shape} as PNG")
    return encoded.tobytes()


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write to a temp name in the same folder, flush to disk, rename: never half a file."""
    with _atomic_file(path) as handle:
        handle.write(data)


@contextmanager
def _atomic_file(path: Path | str) -> Iterator[IO[bytes]]:
    """A file written under a temp name in the same folder, flushed to disk and renamed
    to ``path`` once the block ends; removed instead when it raises."""
    path = Path(path)
    fd, temp = create_temp(path.parent, path.suffix)  # O_EXCL: never a planted link
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_png(path: Path | str, array: np.ndarray) -> None:
    """Save an RGB / RGBA / gray array as PNG atomically."""
    write_bytes_atomic(path, encode_png(array))


def write_png_bands(
    path: Path | str, width: int, height: int, bands: Iterable[np.ndarray], *, level: int = 1
) -> None:
    """Save an RGB image given as bands of rows, top to bottom, as PNG atomically: an image
    too large to hold in memory at once (a synthetic 20000 x 20000 scan) costs one band.
    Raises ValueError when the bands do not add up to ``height`` rows of ``width``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    with _atomic_file(path) as handle:
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        packer = zlib.compressobj(level)
        rows = 0
        for band in bands:
            if band.dtype != np.uint8 or band.shape[1:] != (width, 3):
                raise ValueError(f"a band of shape {band.shape} is not {width} RGB pixels wide")
            rows += band.shape[0]
            # every row starts with its filter type, 0 (none)
            raw = np.concatenate(
                [np.zeros((band.shape[0], 1), np.uint8), band.reshape(band.shape[0], -1)], axis=1
            )
            if packed := packer.compress(raw.tobytes()):
                handle.write(chunk(b"IDAT", packed))
        if rows != height:
            raise ValueError(f"the bands hold {rows} rows, not {height}")
        handle.write(chunk(b"IDAT", packer.flush()) + chunk(b"IEND", b""))
