"""Reading images and masks: formats, bit depths, channels, orientation, and bad files."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from workstation.core.errors import UserError
from workstation.core.imageio import (
    ImageReadError,
    image_size,
    probe_image,
    read_image,
    read_mask,
    read_mask_checked,
    stored_size,
    write_png,
    write_png_bands,
)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_formats_read_back_exactly(tmp_path: Path, rgb: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"image{suffix}"
    Image.fromarray(rgb).save(path)
    result = read_image(path)
    assert result.dtype == np.uint8 and result.shape == (24, 32, 3)
    assert np.array_equal(result, rgb)


def test_jpeg_reads_close_to_the_original(tmp_path: Path, rgb: np.ndarray) -> None:
    smooth = cv2.GaussianBlur(rgb, (0, 0), 3)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    result = read_image(tmp_path / "a.jpg")
    assert result.shape == smooth.shape
    assert np.abs(result.astype(int) - smooth).mean() < 3


def test_gray_becomes_three_equal_channels(tmp_path: Path, rgb: np.ndarray) -> None:
    gray = rgb[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    result = read_image(tmp_path / "g.png")
    assert result.shape == (24, 32, 3)
    assert all(np.array_equal(result[:, :, c], gray) for c in range(3))


def test_rgba_is_composited_on_black(tmp_path: Path, rgb: np.ndarray) -> None:
    alpha = np.zeros((24, 32), np.uint8)
    alpha[:, 16:] = 255
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    result = read_image(tmp_path / "a.png")
    assert np.array_equal(result[:, 16:], rgb[:, 16:])
    assert not result[:, :16].any()


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_16_bit_is_scaled_linearly(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16).repeat(4, axis=0)
    cv2.imwrite(str(tmp_path / f"deep{suffix}"), values)
    result = read_image(tmp_path / f"deep{suffix}")
    assert result.dtype == np.uint8
    assert result[0, :, 0].tolist() == [0, 1, 255, 128]


def test_16_bit_rgb_tiff(tmp_path: Path) -> None:
    deep = (np.random.default_rng(1).integers(0, 65536, (10, 12, 3))).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.tiff"), deep[:, :, ::-1])  # cv2 writes BGR
    result = read_image(tmp_path / "rgb16.tiff")
    expected = np.rint(deep / 257).astype(np.uint8)
    assert np.abs(result.astype(int) - expected).max() <= 1


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:8, :8] = 255  # a white block in the top-left corner
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    result = read_image(tmp_path / "phone.jpg")
    assert result.shape == (32, 24, 3)
    assert image_size(tmp_path / "phone.jpg") == (24, 32)
    probed = probe_image(tmp_path / "phone.jpg")
    assert (probed.width, probed.height) == (24, 32)
    upright = np.rot90(rgb, k=-1)  # orientation 6: turn clockwise to display
    assert np.abs(result.astype(int) - upright).mean() < 8
    assert result[:8, -8:].mean() > 200  # the block is now top-right


def test_probe_hashes_the_file_bytes(tmp_path: Path, rgb: np.ndarray) -> None:
    write_png(tmp_path / "x.png", rgb)
    probed = probe_image(tmp_path / "x.png")
    assert probed.sha256 == hashlib.sha256((tmp_path / "x.png").read_bytes()).hexdigest()
    assert (probed.width, probed.height) == (32, 24)


def _bad_files(tmp_path: Path, rgb: np.ndarray) -> dict[str, Path]:
    write_png(tmp_path / "good.png", rgb)
    png = (tmp_path / "good.png").read_bytes()
    Image.fromarray(rgb).save(tmp_path / "good.jpg")
    jpg = (tmp_path / "good.jpg").read_bytes()
    files = {
        "zero": (tmp_path / "zero.png", b""),
        "garbage": (tmp_path / "garbage.png", b"\x00\x01not an image at all" * 40),
        "truncated_png": (tmp_path / "cut.png", png[: len(png) // 2]),
        "truncated_jpg": (tmp_path / "cut.jpg", jpg[: len(jpg) // 2]),
        "corrupt_png_body": (
            tmp_path / "flip.png",
            png[:60] + bytes(b ^ 0xFF for b in png[60:-12]) + png[-12:],
        ),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {k: v[0] for k, v in files.items()}


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("zero", "empty"),
        ("garbage", "not a readable image"),
        ("truncated_png", "truncated"),
        ("truncated_jpg", "truncated"),
        ("corrupt_png_body", "decode|corrupt"),
    ],
)
def test_bad_files_raise_a_clear_error(
    tmp_path: Path, rgb: np.ndarray, kind: str, reason: str
) -> None:
    path = _bad_files(tmp_path, rgb)[kind]
    for reader in (read_image, probe_image):
        with pytest.raises(ImageReadError, match=reason) as caught:
            reader(path)
        assert str(path) in str(caught.value)
        assert isinstance(caught.value, UserError)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_paths_with_spaces_and_non_ascii(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "Prüfteil 東京 ø" / "bild nr 1.png"
    write_png(path, rgb)
    assert np.array_equal(read_image(path), rgb)


def test_10000_square_image_reads_with_a_size_guard(tmp_path: Path) -> None:
    big = np.zeros((10_000, 10_000), np.uint8)
    big[::97, :] = 200
    path = tmp_path / "huge.jpg"  # JPEG keeps the test quick: reduced-size decoding
    assert cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    probed = probe_image(path)
    assert (probed.width, probed.height) == (10_000, 10_000)
    small = read_image(path, max_side=500)
    assert small.shape == (500, 500, 3)
    del big


@pytest.mark.parametrize("side", [25_000, 30_000])  # Pillow alone would warn, then refuse
def test_images_over_the_pixel_limit_are_refused_before_decoding(
    tmp_path: Path, side: int
) -> None:
    # A valid PNG header claiming side x side pixels; the body is never reached.
    import struct
    import warnings
    import zlib

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + end)
    with warnings.catch_warnings(record=True) as warned, pytest.raises(ImageReadError) as error:
        warnings.simplefilter("always")
        read_image(path)
    message = str(error.value)
    assert f"{side}x{side} pixels" in message  # read from the header
    assert "limit of 100 megapixels" in message and "800" not in message  # one limit only
    assert not warned  # nothing on stderr besides the message


def test_masks_binary_and_non_binary(tmp_path: Path) -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:8] = 255
    write_png(tmp_path / "m.png", mask)
    loaded, warning = read_mask_checked(tmp_path / "m.png", expected_shape=(10, 12))
    assert warning is None and np.array_equal(loaded, mask // 255)
    ones = (mask > 0).astype(np.uint8)
    write_png(tmp_path / "ones.png", ones)  # 0/1 masks are binary too
    assert np.array_equal(read_mask(tmp_path / "ones.png"), ones)

    soft = mask.copy()
    soft[5, 3:8] = 100  # anti-aliased edge below half: background
    soft[1, 3:8] = 200  # above half: defect
    write_png(tmp_path / "soft.png", soft)
    loaded, warning = read_mask_checked(tmp_path / "soft.png")
    assert warning is not None and "not binary" in warning
    assert loaded[1, 4] == 1 and loaded[5, 4] == 0 and loaded[3, 4] == 1


def test_mask_of_a_different_size_is_refused(tmp_path: Path) -> None:
    write_png(tmp_path / "m.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(ImageReadError, match="12x10 pixels but its image is 20x10"):
        read_mask(tmp_path / "m.png", expected_shape=(10, 20))


def test_write_png_is_atomic_and_leaves_no_temp(tmp_path: Path, rgb: np.ndarray) -> None:
    write_png(tmp_path / "out" / "a.png", rgb)
    write_png(tmp_path / "out" / "a.png", rgb[::-1])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    assert np.array_equal(read_image(tmp_path / "out" / "a.png"), rgb[::-1])


def test_png_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:8, :8] = 255
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 8  # turn counter-clockwise to display
    image.save(tmp_path / "rot.png", exif=exif)
    result = read_image(tmp_path / "rot.png")
    assert np.array_equal(result, np.rot90(rgb))
    assert image_size(tmp_path / "rot.png") == (24, 32)


def test_a_png_written_in_bands_reads_back_exactly(tmp_path: Path, rgb: np.ndarray) -> None:
    write_png_bands(tmp_path / "banded.png", 32, 24, [rgb[:10], rgb[10:11], rgb[11:]])
    assert np.array_equal(read_image(tmp_path / "banded.png"), rgb)
    assert stored_size(tmp_path / "banded.png") == (32, 24)
    with pytest.raises(ValueError, match="23 rows, not 24"):
        write_png_bands(tmp_path / "short.png", 32, 24, [rgb[:23]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["banded.png"]  # no half file


def test_stored_size_reads_the_header_and_refuses_over_the_limit(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"  # a PNG header declaring 19999 x 19999, no pixels
    write_png(huge, np.zeros((1, 1, 3), np.uint8))
    data = bytearray(huge.read_bytes())
    data[16:24] = (19_999).to_bytes(4, "big") * 2  # IHDR width and height, then its CRC
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    huge.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="19999x19999 pixels is more than the limit"):
        stored_size(huge)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        stored_size(tmp_path / "empty.png")
