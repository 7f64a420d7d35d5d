"""Images as arrays, files and data URIs, and maps coloured over them: PNG and JPEG
encoding, downsampling, the colour scales of a map and its blend over a grey photo.

Shared by the plotly figures (:mod:`~lpips_explain.output.figures`), the PNG summary
(:mod:`~lpips_explain.output.static`), the HTML pages and the app. Numpy and Pillow
only: nothing here loads plotly. Sizes are written width x height everywhere.
"""

from __future__ import annotations

import base64
import functools
import io
from typing import Any

import numpy as np

from lpips_explain.errors import InputError
from lpips_explain.output.palette import (
    AMOUNT,
    AMOUNT_FADE_IN,
    AMOUNT_FADE_POWER,
    AMOUNT_STOPS,
    BOX_DARK,
    BOX_LIGHT,
    CLIP_PERCENTILE,
    FADE_IN,
    GREY_HIGH,
    GREY_LOW,
    MID_GREY,
    MPL_CANDIDATES,
    MPL_DIVERGING,
    MPL_SEQUENTIAL,
)

__all__ = [
    "as_uint8_image", "colorize", "colour_bar_html", "colour_bar_rgb", "default_cmap",
    "downsample_image", "downsample_map", "explained_images", "fade_alpha", "grey_photo",
    "jpeg_data_uri", "map_limits", "map_rgba", "outline", "overlay_image", "png_bytes",
    "png_data_uri", "shared_limit", "size_text", "zoom_crop",
]


def fade_alpha(t: np.ndarray, *, symmetric: bool = False) -> np.ndarray:
    """The map's opacity (0..1, before the overall opacity) at normalised values ``t`` in
    [0, 1]: rising with the value, or with the distance from the centre if ``symmetric``."""
    t = np.asarray(t, dtype=np.float64)
    if symmetric:
        return np.minimum(1.0, np.abs(2 * t - 1) / FADE_IN)
    return np.minimum(1.0, np.clip(t, 0.0, 1.0) / AMOUNT_FADE_IN) ** AMOUNT_FADE_POWER


def grey_photo(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 photo in lightened grey (Rec. 709 luminance, GREY_LOW..GREY_HIGH)."""
    img = as_uint8_image(image).astype(np.float64)
    lum = img @ np.array([0.2126, 0.7152, 0.0722])
    grey = GREY_LOW + (GREY_HIGH - GREY_LOW) * lum / 255.0
    return np.repeat(grey.round().astype(np.uint8)[..., None], 3, axis=2)


def default_cmap(symmetric: bool, colorscale: str | None = None) -> str:
    if symmetric:
        return MPL_CANDIDATES if colorscale == "candidates" else MPL_DIVERGING
    if colorscale in (None, "Inferno", AMOUNT):
        return AMOUNT
    return colorscale


def colour_bar_rgb(*, symmetric: bool = False, cmap: str | None = None, opacity: float = 0.8,
                   n: int = 64) -> np.ndarray:
    """``n`` x 3 uint8 colours of a map's colour bar from the bottom to the top of its scale:
    the map's colours as they fall on a mid-grey part of the photo (same alpha, same blend
    as :func:`overlay_image`)."""
    t = np.linspace(0.0, 1.0, n)
    colours = _colour_lookup(t, cmap or default_cmap(symmetric))
    alpha = float(opacity) * fade_alpha(t, symmetric=symmetric)[:, None]
    out = (1 - alpha) * MID_GREY + alpha * colours
    return out.round().clip(0, 255).astype(np.uint8)



def colour_bar_html(lo: float, hi: float, label: str, *, symmetric: bool = False,
                    cmap: str | None = None, opacity: float = 0.8) -> str:
    """A slim horizontal colour bar as an HTML fragment (a CSS gradient of
    :func:`colour_bar_rgb`, its two ends labelled), for a map drawn as a plain image."""
    import html as _html

    rgb = colour_bar_rgb(symmetric=symmetric, cmap=cmap, opacity=opacity, n=16)
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in rgb.tolist())
    ends = "".join(f"<span>{_html.escape(t)}</span>" for t in (f"{lo:.2g}", f"{hi:.2g}"))
    return (f'<div class="lx-mapbar" style="font-size:12px;color:#555;line-height:1.3">'
            f'<div style="height:9px;border-radius:2px;background:linear-gradient(to right, '
            f'{stops})"></div><div style="display:flex;justify-content:space-between">{ends}'
            f"</div><div>{_html.escape(label)}</div></div>")



def size_text(size: tuple[int, int]) -> str:
    """'W x H' of an (H, W) size: sizes are written width x height everywhere."""
    h, w = size
    return f"{w}x{h}"


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an HxWx3 (or HxW, or HxWx4) uint8 array as PNG bytes."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"png_bytes takes a uint8 array, got dtype {arr.dtype}.")
    buf = io.BytesIO()
    # zlib level 3: 7% larger than optimize=True, 17x faster (a 600x400 photo: 30 ms against
    # 530 ms); an explanation writes a dozen of them and the app draws more.
    Image.fromarray(arr).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    """An inline ``data:image/png;base64,...`` URI for a uint8 image (no external file)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def jpeg_data_uri(image: np.ndarray, quality: int = 88) -> str:
    """An inline JPEG ``data:`` URI for an HxWx3 uint8 photo (for lean reports)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(as_uint8_image(image)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _target_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def downsample_image(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """An HxWx3 uint8 image shrunk (area filter) so that its longer side is at most max_side."""
    from PIL import Image

    img = as_uint8_image(image)
    h, w = _target_size(*img.shape[:2], max_side)
    if (h, w) == img.shape[:2]:
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BOX))


def downsample_map(heat: np.ndarray, max_side: int | None) -> np.ndarray:
    """An HxW map averaged over blocks (area filter) so that its longer side is <= max_side."""
    from PIL import Image

    z = np.asarray(heat, dtype=np.float64)
    h, w = _target_size(*z.shape, max_side)
    if (h, w) == z.shape:
        return z
    small = Image.fromarray(z.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def shared_limit(*maps: np.ndarray, symmetric: bool = False) -> float:
    """One colour-scale limit for several maps drawn side by side: the largest value (the
    99.5th percentile of |value| for signed maps); 1.0 when every map is all zero."""
    values = [np.asarray(m, dtype=np.float64) for m in maps]
    finite = [v[np.isfinite(v)] for v in values]
    finite = [np.abs(v) if symmetric else v for v in finite if v.size]
    if not finite:
        return 1.0
    if symmetric:
        m = max(float(np.percentile(v, CLIP_PERCENTILE)) for v in finite)
        if m <= 0:
            m = max(float(v.max()) for v in finite)
    else:
        m = max(float(v.max()) for v in finite)
    return m if m > 0 else 1.0


def _normalise(heat: np.ndarray, symmetric: bool, zmax: float | None) -> np.ndarray:
    """Values to [0, 1] on the map's colour scale: 0..zmax (0..max, or min..max when there
    are negative values) or -zmax..zmax centred at 0 (-m..m, m = max |value|) if symmetric."""
    h = np.asarray(heat, dtype=np.float64)
    if h.ndim != 2:
        raise InputError(f"colorize takes an HxW map, got shape {h.shape}.")
    finite = h[np.isfinite(h)]
    if symmetric:
        m = float(zmax) if zmax is not None else (float(np.abs(finite).max()) if finite.size
                                                   else 0.0)
        lo, hi = -m, m
    else:
        lo = 0.0 if zmax is not None else (min(0.0, float(finite.min())) if finite.size
                                           else 0.0)
        hi = float(zmax) if zmax is not None else (float(finite.max()) if finite.size else 0.0)
    span = hi - lo
    norm = (h - lo) / span if span > 0 else np.full_like(h, 0.5 if symmetric else 0.0)
    return np.nan_to_num(np.clip(norm, 0.0, 1.0), nan=0.5 if symmetric else 0.0)


@functools.cache
def _amount_cmap() -> Any:
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(AMOUNT, list(AMOUNT_STOPS), N=256)


def _colour_lookup(t: np.ndarray, cmap: str) -> np.ndarray:
    """RGB in 0..255 (float) of the colour map ``cmap`` (a matplotlib name or AMOUNT) at t."""
    import matplotlib

    colours = _amount_cmap() if cmap == AMOUNT else matplotlib.colormaps[cmap]
    return np.asarray(colours(np.asarray(t, dtype=np.float64)))[..., :3] * 255


def colorize(heat: np.ndarray, *, symmetric: bool = False, cmap: str | None = None,
             zmax: float | None = None) -> np.ndarray:
    """Colour-map an HxW array to HxWx3 uint8 (0..max, or -m..m centred at 0 if symmetric;
    0..zmax or -zmax..zmax when ``zmax`` is given); ``cmap`` a matplotlib name or
    :data:`AMOUNT` (default: Inferno, or RdBu if symmetric)."""
    norm = _normalise(heat, symmetric, zmax)
    name = cmap or (MPL_DIVERGING if symmetric else MPL_SEQUENTIAL)
    return _colour_lookup(norm, name).round().astype(np.uint8)


def _resize_map(heat: np.ndarray, h: int, w: int) -> np.ndarray:
    """A map stretched over an HxW image, nearest-neighbour (a layer grid stays a grid)."""
    z = np.asarray(heat, dtype=np.float64)
    if z.shape == (h, w):
        return z
    rows = np.minimum((np.arange(h) * z.shape[0]) // h, z.shape[0] - 1)
    cols = np.minimum((np.arange(w) * z.shape[1]) // w, z.shape[1] - 1)
    return z[rows][:, cols]


def map_rgba(heat: np.ndarray, size: tuple[int, int] | None = None, *, symmetric: bool = False,
             zmax: float | None = None, cmap: str | None = None,
             fade: bool = False) -> np.ndarray:
    """The map as an HxWx4 uint8 layer stretched to ``size`` (H, W), in the colours of
    :func:`overlay_image` (default: AMOUNT, or RdBu if symmetric): opaque, or with ``fade``
    an alpha that rises with the value exactly as there (see :func:`fade_alpha`)."""
    z = np.asarray(heat, dtype=np.float64)
    if size is not None:
        z = _resize_map(z, *size)
    t = _normalise(z, symmetric, zmax)
    rgb = _colour_lookup(t, cmap or default_cmap(symmetric)).round().astype(np.uint8)
    if fade:
        alpha = (255 * fade_alpha(t, symmetric=symmetric)).round().astype(np.uint8)
    else:
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def overlay_image(image: np.ndarray, heat: np.ndarray, *, opacity: float = 0.8,
                  symmetric: bool = False, zmax: float | None = None,
                  cmap: str | None = None, grey: bool = True) -> np.ndarray:
    """The photo (in grey unless ``grey`` is False) with the colour-mapped map blended over
    it, as one HxWx3 uint8 image: the map fades in with its value (:func:`fade_alpha`) up to
    ``opacity``. The app's maps, the card, the compare layer and the PNG all draw this."""
    img = as_uint8_image(image)
    base = grey_photo(img) if grey else img
    z = _resize_map(np.asarray(heat, dtype=np.float64), *img.shape[:2])
    t = _normalise(z, symmetric, zmax)
    colours = _colour_lookup(t, cmap or default_cmap(symmetric))
    alpha = float(opacity) * fade_alpha(t, symmetric=symmetric)[..., None]
    out = (1 - alpha) * base.astype(np.float64) + alpha * colours
    return out.round().clip(0, 255).astype(np.uint8)




def outline(image: np.ndarray, edges: tuple[float, float, float, float]) -> np.ndarray:
    """A copy of an HxWx3 uint8 image with a box drawn at ``edges`` (x0, y0, x1, y1 as
    fractions of its width and height): a dark line with a light inner edge, readable on
    any colour (the hottest window of :func:`lpips_explain.analyses.pair.map_scale.hottest_window`)."""
    out = as_uint8_image(image).copy()
    h, w = out.shape[:2]
    x0, x1 = (min(w - 1, max(0, round(e * w))) for e in (edges[0], edges[2]))
    y0, y1 = (min(h - 1, max(0, round(e * h))) for e in (edges[1], edges[3]))
    x1, y1 = max(x0, x1 - 1), max(y0, y1 - 1)
    dark = max(2, round(min(h, w) / 128))
    for colour, inset, width in ((BOX_DARK, 0, dark), (BOX_LIGHT, dark, 1)):
        rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
        a0, a1, b0, b1 = x0 + inset, x1 - inset, y0 + inset, y1 - inset
        if a1 < a0 or b1 < b0:
            break
        out[b0:b0 + width, a0:a1 + 1] = rgb
        out[max(b0, b1 - width + 1):b1 + 1, a0:a1 + 1] = rgb
        out[b0:b1 + 1, a0:a0 + width] = rgb
        out[b0:b1 + 1, max(a0, a1 - width + 1):a1 + 1] = rgb
    return out


def as_uint8_image(image: Any) -> np.ndarray:
    """An HxWx3 uint8 array from such an array or a 1x3xHxW / 3xHxW tensor in [0, 1]."""
    if hasattr(image, "detach"):  # a torch tensor in [0, 1]
        from lpips_explain.intake.tensors import to_uint8

        return to_uint8(image)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"Expected an HxWx3 uint8 image, got shape {arr.shape} and dtype "
                         f"{arr.dtype}; convert tensors with images.to_uint8.")
    return arr



def explained_images(expl: Any) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(reference uint8, explained uint8, reference label, explained label) of an Explanation,
    read off the result's roles (B is explained unless the roles were swapped)."""
    return (as_uint8_image(expl.reference), as_uint8_image(expl.explained),
            expl.reference_name, expl.explained_name)



def map_limits(z: np.ndarray, symmetric: bool, zmax: float | None) -> tuple[float, float]:
    """The bottom and top of a map's colour scale (as :func:`_normalise` uses them)."""
    if symmetric:
        m = float(zmax) if zmax is not None else shared_limit(z, symmetric=True)
        return -m, m
    if zmax is not None:
        return 0.0, float(zmax)
    finite = z[np.isfinite(z)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    return lo, hi if hi > lo else lo + 1.0



def zoom_crop(image: np.ndarray, edges: tuple[float, float, float, float], *,
              min_side: int = 64, target: int = 180) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """The part of an HxWx3 uint8 image inside ``edges`` (x0, y0, x1, y1 as fractions; grown
    about its centre to at least ``min_side`` px a side where the image allows), enlarged
    by a whole factor (nearest neighbour: every pixel a square) to about ``target`` px at
    most; never shrunk. Returns (the crop, the factor, (x0, y0, x1, y1) in pixels)."""
    img = as_uint8_image(image)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (round(edges[0] * w), round(edges[1] * h), round(edges[2] * w),
                      round(edges[3] * h))
    bounds = []
    for lo, hi, n in ((x0, x1, w), (y0, y1, h)):
        side = min(n, max(hi - lo, min_side))
        centre = (lo + hi) / 2
        start = int(min(max(0, round(centre - side / 2)), n - side))
        bounds.append((start, start + side))
    (cx0, cx1), (cy0, cy1) = bounds
    crop = img[cy0:cy1, cx0:cx1]
    zoom = max(1, int(target // max(crop.shape[:2])))
    if zoom > 1:
        crop = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)
    return crop, zoom, (cx0, cy0, cx1, cy1)
