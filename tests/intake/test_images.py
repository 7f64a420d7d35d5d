"""Tests of lpips_explain.images: intake of every source type, refusals, modes and alignment."""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpips_explain.core.trunks import TRUNKS, check_min_size
from lpips_explain.errors import (
    CorruptImageError,
    EmptyInputError,
    ImageTooLargeError,
    ImageTooSmallError,
    InputError,
    LpipsExplainError,
    NotAnImageError,
    SizeMismatchError,
    UnknownOptionError,
    ValueRangeError,
)
from lpips_explain.intake import align as I_align
from lpips_explain.intake import arrays as I_arrays
from lpips_explain.intake import colour_modes as I_modes
from lpips_explain.intake import decode as I_decode
from lpips_explain.intake import images as I
from lpips_explain.intake import pixels as I_pixels
from lpips_explain.intake import tensors as I_tensors

# ----------------------------------------------------------------------------- fixtures

MIN_SIZES = {k: v.min_size for k, v in TRUNKS.items()}


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def rgb_array() -> np.ndarray:
    """A 5x7 (height x width) random RGB uint8 picture."""
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.fixture
def noise_png() -> bytes:
    rng = np.random.default_rng(1)
    return encode(Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)))


def pixel(loaded: I.LoadedImage, y: int = 0, x: int = 0) -> list[float]:
    return loaded.tensor[0, :, y, x].tolist()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ----------------------------------------------------------------------------- sources


def test_every_source_type_gives_the_same_tensor(rgb_array, tmp_path):
    data = encode(Image.fromarray(rgb_array))
    path = tmp_path / "pic.png"
    path.write_bytes(data)
    reference = torch.from_numpy(rgb_array).permute(2, 0, 1).unsqueeze(0).float() / 255
    with open(path, "rb") as fh:
        from_handle = I.load_image(fh)
    exact = [
        I.load_image(str(path)),
        I.load_image(path),
        I.load_image(data),
        I.load_image(bytearray(data)),
        I.load_image(memoryview(data)),
        I.load_image(io.BytesIO(data)),
        from_handle,
        I.load_image(Image.fromarray(rgb_array)),
        I.load_image(rgb_array),
        I.load_image(np.ascontiguousarray(rgb_array.transpose(2, 0, 1))),
        I.load_image(torch.from_numpy(rgb_array).permute(2, 0, 1)),
        I.load_image(torch.from_numpy(rgb_array).permute(2, 0, 1).unsqueeze(0)),
        I.load_image(torch.from_numpy(rgb_array).permute(2, 0, 1).float(), value_range="[0,255]"),
        I.load_image(rgb_array.astype(np.float64), value_range="[0,255]"),
    ]
    for loaded in exact:
        t = loaded.tensor
        assert t.dtype == torch.float32 and t.shape == (1, 3, 5, 7)
        assert t.is_contiguous() and not t.requires_grad
        assert torch.allclose(t, reference, atol=1e-7, rtol=0), loaded.name
        assert loaded.size == (5, 7) and loaded.original_size == (5, 7)
        assert loaded.warnings == ()
    unit = I.load_image(rgb_array.astype(np.float32) / 255, value_range="[0,1]")
    assert torch.allclose(unit.tensor, reference, atol=1e-6)
    assert exact[0].tensor.equal(exact[8].tensor)  # PNG file and uint8 array agree bit for bit


def test_names_modes_and_formats(rgb_array, tmp_path):
    data = encode(Image.fromarray(rgb_array))
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    named = io.BytesIO(data)
    named.name = "/uploads/dog.png"
    cases = [
        (I.load_image(path), "cat.png", "RGB", "PNG"),
        (I.load_image(named), "dog.png", "RGB", "PNG"),
        (I.load_image(data), "<bytes>", "RGB", "PNG"),
        (I.load_image(Image.fromarray(rgb_array)), "<PIL image>", "RGB", None),
        (I.load_image(rgb_array), "<array>", "array", None),
        (I.load_image(torch.zeros(3, 4, 4), value_range="[0,1]"), "<tensor>", "tensor", None),
        (I.load_image(data, name="mine"), "mine", "RGB", "PNG"),
    ]
    for loaded, name, mode, fmt in cases:
        assert (loaded.name, loaded.mode, loaded.format) == (name, mode, fmt)


def test_loaded_image_is_returned_unchanged(rgb_array):
    loaded = I.load_image(rgb_array)
    assert I.load_image(loaded) is loaded


def test_tensor_is_detached_and_moved_to_cpu_float32():
    src = torch.full((1, 3, 4, 4), 0.25, dtype=torch.float64, requires_grad=True)
    loaded = I.load_image(src, value_range="[0,1]")
    assert loaded.tensor.dtype == torch.float32 and not loaded.tensor.requires_grad
    assert loaded.tensor.device.type == "cpu"
    assert torch.allclose(loaded.tensor, torch.full((1, 3, 4, 4), 0.25))


def test_file_handles_are_closed(noise_png, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(noise_png)
    bad = tmp_path / "bad.png"
    bad.write_bytes(noise_png[: len(noise_png) // 2])
    before = open_fds()
    for _ in range(3):
        I.load_image(good)
        with pytest.raises(CorruptImageError):
            I.load_image(bad)
    assert open_fds() == before


# ----------------------------------------------------------------------------- ranges


def test_range_minus_one_to_one():
    t = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3).expand(3, 1, 3)
    loaded = I.load_image(t, value_range="[-1,1]")
    assert loaded.tensor[0, 0, 0].tolist() == [0.0, 0.5, 1.0]


def test_range_zero_to_255_float_and_uint8_default():
    arr = np.array([[0.0, 51.0, 255.0]], dtype=np.float32)
    assert I.load_image(arr, value_range="[0,255]").tensor[0, 1, 0].tolist() == pytest.approx(
        [0.0, 0.2, 1.0]
    )
    assert I.load_image(arr.astype(np.uint8)).tensor[0, 2, 0].tolist() == pytest.approx(
        [0.0, 0.2, 1.0]
    )


def test_uint16_array_implies_16_bit_range():
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    row = I.load_image(arr).tensor[0, 0, 0].tolist()
    assert row == pytest.approx([0.0, 32768 / 65535, 1.0], abs=1e-7)


def test_float_rounding_noise_at_range_edges_is_accepted():
    arr = np.array([[-1e-7, 1 + 1e-7]], dtype=np.float64)
    row = I.load_image(arr, value_range="[0,1]").tensor[0, 0, 0].tolist()
    assert row == [0.0, 1.0]


def test_out_of_range_float_is_refused_with_min_max_and_range():
    arr = np.full((4, 4), 0.5, dtype=np.float32)
    arr[0, 0], arr[1, 1] = -0.25, 1.5
    with pytest.raises(ValueRangeError) as exc:
        I.load_image(arr, value_range="[0,1]")
    msg = str(exc.value)
    assert "-0.25" in msg and "1.5" in msg and "[0,1]" in msg and "never clamped" in msg


def test_just_beyond_tolerance_is_refused():
    with pytest.raises(ValueRangeError):
        I.load_image(np.array([[1.0 + 1e-4]]), value_range="[0,1]")


def test_uint8_with_stated_unit_range_is_refused_when_it_does_not_fit():
    with pytest.raises(ValueRangeError, match=r"0 to 200.*\[0,1\]"):
        I.load_image(np.array([[0, 200]], dtype=np.uint8), value_range="[0,1]")


def test_nan_is_refused_with_count():
    arr = np.zeros((3, 3), dtype=np.float32)
    arr[0, 0] = arr[2, 2] = np.nan
    with pytest.raises(ValueRangeError, match="2 NaN values") as exc:
        I.load_image(arr, value_range="[0,1]")
    assert "Inf" not in str(exc.value)


def test_inf_is_refused_with_count():
    t = torch.zeros(3, 2, 2)
    t[1, 0, 0] = float("-inf")
    with pytest.raises(ValueRangeError, match="1 Inf value") as exc:
        I.load_image(t, value_range="[-1,1]")
    assert "NaN" not in str(exc.value)


def test_float_array_without_range_is_refused():
    with pytest.raises(InputError) as exc:
        I.load_image(np.zeros((4, 4, 3), dtype=np.float32))
    msg = str(exc.value)
    assert '"[0,1]"' in msg and '"[-1,1]"' in msg and '"[0,255]"' in msg and "float32" in msg


def test_float_tensor_without_range_is_refused():
    with pytest.raises(InputError, match="value_range"):
        I.load_image(torch.rand(3, 4, 4))


def test_bool_array_is_refused():
    with pytest.raises(InputError, match="boolean"):
        I.load_image(np.ones((4, 4), dtype=bool))


def test_batch_tensor_is_refused():
    with pytest.raises(InputError, match="batch of 2") as exc:
        I.load_image(torch.zeros(2, 3, 8, 8), value_range="[0,1]")
    assert "one image per call" in str(exc.value)


def test_channels_last_tensor_is_refused_with_a_hint():
    with pytest.raises(InputError, match="permute"):
        I.load_image(torch.zeros(8, 8, 3), value_range="[0,1]")


def test_unknown_value_range_gets_did_you_mean():
    with pytest.raises(UnknownOptionError, match=r"Did you mean '\[0,1\]'"):
        I.load_image(np.zeros((4, 4), dtype=np.uint8), value_range="[0,1")


def test_array_shapes_accepted():
    grey = np.array([[10, 20], [30, 40]], dtype=np.uint8)
    expected = I.load_image(grey).tensor
    assert expected[0, :, 1, 0].tolist() == pytest.approx([30 / 255] * 3)
    for arr in (grey[:, :, None], grey[None], np.repeat(grey[:, :, None], 3, axis=2)):
        assert I.load_image(arr).tensor.equal(expected)
    assert I.load_image(torch.from_numpy(grey)[None, None]).tensor.equal(expected)


def test_array_alpha_is_composited_with_warning():
    rgba = np.zeros((2, 2, 4), dtype=np.float32)
    rgba[..., 0] = 1.0  # red
    rgba[..., 3] = [[1.0, 0.5], [0.0, 1.0]]
    loaded = I.load_image(rgba, value_range="[0,1]", background=(0, 0, 255))
    assert pixel(loaded, 0, 0) == [1.0, 0.0, 0.0]
    assert pixel(loaded, 0, 1) == pytest.approx([0.5, 0.0, 0.5])
    assert pixel(loaded, 1, 0) == [0.0, 0.0, 1.0]
    assert len(loaded.warnings) == 1 and "alpha" in loaded.warnings[0]
    assert "(0, 0, 255)" in loaded.warnings[0]


def test_opaque_alpha_gives_no_warning():
    rgba = np.full((2, 2, 4), 255, dtype=np.uint8)
    assert I.load_image(rgba).warnings == ()


# ----------------------------------------------------------------------------- refusals of files


def test_empty_bytes_are_refused():
    with pytest.raises(EmptyInputError, match="0 bytes"):
        I.load_image(b"")


def test_empty_file_and_empty_upload_are_refused(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(EmptyInputError, match=r"empty\.png"):
        I.load_image(empty)
    upload = io.BytesIO(b"")
    upload.name = "upload.jpg"
    with pytest.raises(EmptyInputError, match=r"upload\.jpg"):
        I.load_image(upload)


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist") as exc:
        I.load_image(tmp_path / "nope.png")
    assert "nope.png" in str(exc.value)
    assert not isinstance(exc.value, EmptyInputError)


def test_non_image_bytes_are_refused():
    with pytest.raises(NotAnImageError) as exc:
        I.load_image(b"this is plainly a text file, not a picture")
    msg = str(exc.value)
    assert "PNG" in msg and "JPEG" in msg and "WebP" in msg


def test_truncated_png_is_refused(noise_png):
    with pytest.raises(CorruptImageError, match=r"PNG.*truncated"):
        I.load_image(noise_png[: len(noise_png) // 2])


def test_png_cut_inside_its_header_is_corrupt_not_unknown(noise_png):
    with pytest.raises(CorruptImageError, match="PNG"):
        I.load_image(noise_png[:20])


def test_truncated_jpeg_is_refused():
    rng = np.random.default_rng(2)
    jpeg = encode(Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(CorruptImageError, match=r"JPEG.*truncated"):
        I.load_image(jpeg[: len(jpeg) // 2])


def test_unsupported_source_type_is_refused():
    with pytest.raises(InputError, match="dict"):
        I.load_image({"not": "an image"})


# ----------------------------------------------------------------------------- pixel cap


def test_pixel_cap_via_argument():
    data = encode(Image.new("RGB", (12, 10)))
    with pytest.raises(ImageTooLargeError) as exc:
        I.load_image(data, max_pixels=100)
    msg = str(exc.value)
    assert "12x10 px" in msg and "120" in msg and "100" in msg
    assert "max_pixels=" in msg and I.MAX_PIXELS_ENV in msg
    assert I.load_image(data, max_pixels=120).size == (10, 12)


def test_pixel_cap_via_environment(monkeypatch):
    data = encode(Image.new("RGB", (12, 10)))
    monkeypatch.setenv("LPIPS_EXPLAIN_MAX_PIXELS", "99")
    with pytest.raises(ImageTooLargeError, match="cap of 99 pixels"):
        I.load_image(data)
    with pytest.raises(ImageTooLargeError):
        I.load_image(np.zeros((10, 12), dtype=np.uint8))
    assert I.load_image(data, max_pixels=1000).size == (10, 12)  # argument wins
    monkeypatch.setenv("LPIPS_EXPLAIN_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="LPIPS_EXPLAIN_MAX_PIXELS"):
        I.load_image(data)


def test_pixel_cap_is_checked_before_decoding():
    # 8000x6000 is under Pillow's own guard but over our default cap; the file holds no
    # pixels, so decoding would fail as corrupt: the size error must come first.
    with pytest.raises(ImageTooLargeError, match="8000x6000 px"):
        I.load_image(png_header_only(8000, 6000))


def test_pillow_decompression_bomb_warning_becomes_our_error():
    limit_before = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)
    with pytest.raises(ImageTooLargeError, match="decompression-bomb"):
        I.load_image(png_header_only(10_000, 10_000))
    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters_before


def test_pillow_decompression_bomb_error_becomes_our_error():
    with pytest.raises(ImageTooLargeError, match="decompression-bomb") as exc:
        I.load_image(png_header_only(20_000, 20_000), max_pixels=10**9)
    assert "1,000,000,000" in str(exc.value)


# ----------------------------------------------------------------------------- modes


def test_mode_L_is_replicated_without_warning():
    loaded = I.load_image(encode(Image.new("L", (3, 2), 77)))
    assert loaded.mode == "L" and loaded.warnings == ()
    assert pixel(loaded) == pytest.approx([77 / 255] * 3)


def test_mode_1_is_replicated():
    im = Image.new("1", (2, 2), 0)
    im.putpixel((1, 0), 1)
    loaded = I.load_image(encode(im))
    assert loaded.mode == "1"
    assert pixel(loaded, 0, 0) == [0.0] * 3 and pixel(loaded, 0, 1) == [1.0] * 3


def test_mode_LA_is_composited_with_warning():
    im = Image.new("LA", (2, 1), (200, 255))
    im.putpixel((1, 0), (200, 0))
    loaded = I.load_image(encode(im), background=(0, 255, 0))
    assert loaded.mode == "LA"
    assert pixel(loaded, 0, 0) == pytest.approx([200 / 255] * 3)
    assert pixel(loaded, 0, 1) == [0.0, 1.0, 0.0]
    assert any("alpha" in w and "(0, 255, 0)" in w for w in loaded.warnings)


def test_mode_P_without_transparency_converts_exactly():
    im = Image.new("P", (2, 1))
    im.putpalette([10, 20, 30, 250, 0, 5] + [0, 0, 0] * 254)
    im.putpixel((1, 0), 1)
    loaded = I.load_image(encode(im))
    assert loaded.mode == "P" and loaded.warnings == ()
    assert pixel(loaded, 0, 0) == pytest.approx([10 / 255, 20 / 255, 30 / 255])
    assert pixel(loaded, 0, 1) == pytest.approx([250 / 255, 0.0, 5 / 255])


def test_mode_P_with_transparency_is_composited():
    im = Image.new("P", (2, 1))
    im.putpalette([10, 20, 30, 250, 0, 5] + [0, 0, 0] * 254)
    im.putpixel((1, 0), 1)
    loaded = I.load_image(encode(im, transparency=1))
    assert loaded.mode == "P"
    assert pixel(loaded, 0, 0) == pytest.approx([10 / 255, 20 / 255, 30 / 255])
    assert pixel(loaded, 0, 1) == [1.0, 1.0, 1.0]  # default white background
    assert any("alpha" in w and "(255, 255, 255)" in w for w in loaded.warnings)


def test_mode_PA_is_composited():
    im = Image.new("PA", (2, 1))
    im.putpalette([255, 0, 0] * 256)
    im.putpixel((0, 0), (0, 255))
    im.putpixel((1, 0), (0, 0))
    loaded = I.load_image(im, background=(0, 0, 0))
    assert loaded.mode == "PA"
    assert pixel(loaded, 0, 0) == [1.0, 0.0, 0.0] and pixel(loaded, 0, 1) == [0.0, 0.0, 0.0]
    assert len(loaded.warnings) == 1 and "alpha" in loaded.warnings[0]


def test_mode_RGBA_is_composited_over_background():
    im = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    im.putpixel((1, 0), (255, 0, 0, 51))
    loaded = I.load_image(encode(im), background=(0, 0, 255))
    a = 51 / 255
    assert pixel(loaded, 0, 1) == pytest.approx([a, 0.0, 1 - a], abs=1e-6)
    assert pixel(loaded, 0, 0) == [1.0, 0.0, 0.0]
    assert any("alpha" in w and "(0, 0, 255)" in w for w in loaded.warnings)


def test_mode_I16_png_keeps_16_bit_precision():
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(arr))
    loaded = I.load_image(data)
    assert loaded.mode.startswith("I;16") and loaded.format == "PNG"
    mid = pixel(loaded, 0, 1)
    assert mid == pytest.approx([32768 / 65535] * 3, abs=1e-7)
    assert abs(mid[0] - 128 / 255) > 1e-3  # not squeezed through 8 bits
    assert pixel(loaded, 0, 2) == [1.0] * 3
    assert any("16-bit" in w and "grey" in w for w in loaded.warnings)


def test_mode_I_32_bit_tiff_scales_by_its_bit_depth():
    arr = np.array([[0, 2**30, 2**31 - 1]], dtype=np.int32)
    loaded = I.load_image(encode(Image.fromarray(arr), "TIFF"))
    assert loaded.mode == "I"
    assert pixel(loaded, 0, 1) == pytest.approx([2**30 / (2**31 - 1)] * 3, abs=1e-6)
    assert pixel(loaded, 0, 2) == [1.0] * 3
    assert any("32-bit" in w for w in loaded.warnings)


def test_mode_I_with_negative_values_is_refused():
    im = Image.fromarray(np.array([[-5, 10]], dtype=np.int32))
    with pytest.raises(ValueRangeError, match="-5"):
        I.load_image(im)


def test_mode_F_reads_unit_range():
    arr = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    loaded = I.load_image(encode(Image.fromarray(arr), "TIFF"))
    assert loaded.mode == "F"
    assert loaded.tensor[0, 0, 0].tolist() == [0.0, 0.25, 1.0]
    assert any("[0,1]" in w for w in loaded.warnings)


def test_mode_F_out_of_range_is_refused_unless_range_stated():
    im = Image.fromarray(np.array([[-1.0, 1.0]], dtype=np.float32))
    with pytest.raises(ValueRangeError, match=r"-1 to 1.*\[0,1\]"):
        I.load_image(im)
    assert I.load_image(im, value_range="[-1,1]").tensor[0, 0, 0].tolist() == [0.0, 1.0]


def test_mode_CMYK_is_converted_with_warning():
    im = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    loaded = I.load_image(encode(im, "TIFF"))
    assert loaded.mode == "CMYK"
    assert pixel(loaded) == [1.0, 0.0, 0.0]
    assert any("CMYK" in w and "converted" in w for w in loaded.warnings)


def test_mode_YCbCr_is_converted_with_warning():
    loaded = I.load_image(Image.new("YCbCr", (2, 2), (128, 128, 128)))
    assert loaded.mode == "YCbCr"
    assert pixel(loaded) == pytest.approx([128 / 255] * 3, abs=2 / 255)
    assert any("YCbCr" in w for w in loaded.warnings)


def test_mode_LAB_is_converted_with_colour_management():
    loaded = I.load_image(Image.new("LAB", (2, 2), (255, 128, 128)))
    assert loaded.mode == "LAB"
    assert pixel(loaded) == pytest.approx([1.0, 1.0, 1.0], abs=3 / 255)  # L=100 is white
    assert any("LAB" in w for w in loaded.warnings)


# ----------------------------------------------------------------------------- EXIF, animation


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = I.load_image(encode(im, "JPEG", exif=exif, quality=95))
    assert loaded.size == (40, 20) and loaded.original_size == (40, 20)
    top, bottom = pixel(loaded, 5, 10), pixel(loaded, 35, 10)
    assert top[0] > 0.9 and top[2] < 0.1  # the left edge is now on top
    assert bottom[2] > 0.9 and bottom[0] < 0.1


def test_animated_gif_uses_first_frame_with_warning():
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    loaded = I.load_image(data)
    assert loaded.format == "GIF"
    assert pixel(loaded) == [1.0, 0.0, 0.0]
    assert any("3 frames" in w and "first frame" in w for w in loaded.warnings)


def test_still_gif_has_no_animation_warning():
    loaded = I.load_image(encode(Image.new("RGB", (4, 4), (0, 255, 0)), "GIF"))
    assert not any("frame" in w for w in loaded.warnings)


# ----------------------------------------------------------------------------- min size


@pytest.mark.parametrize("net", sorted(MIN_SIZES))
def test_check_min_size_per_trunk(net):
    m = MIN_SIZES[net]
    check_min_size((m, m), net)  # exactly the minimum is fine
    for size in ((m - 1, m), (m, m - 1)):
        with pytest.raises(ImageTooSmallError) as exc:
            check_min_size(size, net, label="reference image")
        msg = str(exc.value)
        assert f"{size[1]}x{size[0]} px" in msg and f"{m}x{m} px" in msg
        assert repr(net) in msg and "reference image" in msg


def test_check_min_size_unknown_trunk():
    with pytest.raises(UnknownOptionError, match="Did you mean 'alex'"):
        check_min_size((64, 64), "alexnet")


# ----------------------------------------------------------------------------- alignment


def flat(h: int, w: int, value: float = 0.5, name: str = "<tensor>") -> I.LoadedImage:
    return I.load_image(torch.full((3, h, w), value), value_range="[0,1]", name=name)


def test_align_same_size_is_unchanged():
    a, b = flat(8, 6), flat(8, 6, 0.2)
    (ta, tb), info = I_align.align_images([a, b])
    assert ta is a.tensor and tb is b.tensor
    assert info.changed == (False, False) and info.notes == () and info.size == (8, 6)


def test_align_resize_to_smallest_with_notes():
    a, b = flat(40, 80, 0.3, name="big.png"), flat(20, 40, 0.7)
    ta, tb, info = I_align.align_pair(a, b, "resize")
    assert ta.shape == tb.shape == (1, 3, 20, 40)
    assert tb is b.tensor
    assert torch.allclose(ta, torch.full_like(ta, 0.3), atol=1e-6)
    assert info.changed == (True, False) and info.size == (20, 40)
    assert info.original_sizes == ((40, 80), (20, 40))
    assert info.notes == ("A (big.png) resized from 80x40 px to 40x20 px (antialiased)",)


def test_align_resize_reports_distortion_and_stays_in_range():
    rng = torch.Generator().manual_seed(0)
    a = I.load_image(torch.rand(3, 40, 40, generator=rng), value_range="[0,1]")
    b = flat(20, 40)
    (ta, _), info = I_align.align_images([a, b], "resize")
    assert ta.shape[-2:] == (20, 40) and float(ta.min()) >= 0 and float(ta.max()) <= 1
    assert "distorted by 100.0%" in info.notes[0] and info.notes[0].startswith("A resized")


def test_align_resize_tie_takes_first():
    _, info = I_align.align_images([flat(10, 20), flat(20, 10)], "resize")
    assert info.size == (10, 20) and info.changed == (False, True)


def test_align_crop_takes_centre():
    a = torch.zeros(3, 20, 30)
    a[:, :, 5:25] = 1.0  # the centre 20 columns are white
    b = torch.zeros(3, 30, 20)
    b[:, 5:25, :] = 1.0
    ta, tb, info = I_align.align_pair(
        I.load_image(a, value_range="[0,1]"), I.load_image(b, value_range="[0,1]"), "crop"
    )
    assert ta.shape == tb.shape == (1, 3, 20, 20)
    assert float(ta.min()) == 1.0 and float(tb.min()) == 1.0
    assert info.changed == (True, True) and info.size == (20, 20)
    assert info.notes == (
        "A centre-cropped from 30x20 px to 20x20 px",
        "B centre-cropped from 20x30 px to 20x20 px",
    )


def test_align_error_policy_refuses_different_sizes():
    with pytest.raises(SizeMismatchError) as exc:
        I_align.align_pair(flat(10, 20), flat(12, 20), "error")
    msg = str(exc.value)
    assert "20x10 px" in msg and "20x12 px" in msg and "'resize'" in msg and "'crop'" in msg
    _, _, info = I_align.align_pair(flat(10, 20), flat(10, 20), "error")
    assert info.policy == "error"


def test_align_unknown_policy_gets_did_you_mean():
    with pytest.raises(UnknownOptionError, match="Did you mean 'resize'"):
        I_align.align_images([flat(4, 4)], "resise")


def test_align_info_to_dict_is_json_ready():
    _, _, info = I_align.align_pair(flat(40, 80), flat(20, 40))
    d = info.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["original_sizes"] == [[40, 80], [20, 40]] and d["changed"] == [True, False]


# ----------------------------------------------------------------------------- to_uint8, errors


def test_to_uint8_round_trips(rgb_array):
    loaded = I.load_image(rgb_array)
    out = I_tensors.to_uint8(loaded.tensor)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    assert np.array_equal(out, rgb_array)
    assert np.array_equal(I_tensors.to_uint8(loaded.tensor[0]), rgb_array)
    with pytest.raises(InputError, match="shape"):
        I_tensors.to_uint8(torch.zeros(4, 5, 5))


def test_every_refusal_is_an_lpips_explain_error():
    for call in (
        lambda: I.load_image(b""),
        lambda: I.load_image(b"nope"),
        lambda: I.load_image(np.zeros((2, 2)), value_range="0..1"),
        lambda: check_min_size((1, 1), "vgg"),
    ):
        with pytest.raises(LpipsExplainError):
            call()


def test_module_does_not_import_streamlit():
    # load_image and the modules it is split into (pixels, arrays, decode, colour_modes).
    for module in (I, I_pixels, I_arrays, I_decode, I_modes):
        source = Path(module.__file__).read_text()
        assert "streamlit" not in source and "assert " not in source, module.__name__


def test_16_bit_colour_png_says_bits_were_dropped(tmp_path):
    import zlib

    # A 2x2 16-bit RGB PNG written by hand (Pillow cannot write one).
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    ihdr = (2).to_bytes(4, "big") * 2 + bytes([16, 2, 0, 0, 0])
    rows = b"".join(b"\x00" + (b"\x80\x01" * 3) * 2 for _ in range(2))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
           + chunk(b"IEND", b""))
    loaded = I.load_image(png)
    assert any("16-bit colour PNG" in w for w in loaded.warnings)
    assert loaded.tensor.shape == (1, 3, 2, 2)
    eight = io.BytesIO()
    Image.new("RGB", (2, 2), (128, 1, 1)).save(eight, format="PNG")
    assert not any("16-bit" in w for w in I.load_image(eight.getvalue()).warnings)
