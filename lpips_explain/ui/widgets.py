"""The app's shared visual language: charts, captions, pickers, notices, the glossary, the
distance scale, presentation mode and the page styling. Every page draws through these.

- One caption per figure: :func:`chart` shows the figure's own caption (kept in
  ``fig.layout.meta``) under it, once; :func:`note` is a caption that presentation mode hides.
- Material icons (``:material/...:``) only: emoji render as empty boxes in some browsers.
- Technical terms get a tooltip from :data:`GLOSSARY` and the glossary at the page's end.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from lpips_explain import notices
from lpips_explain.analyses.pair.summary import Category
from lpips_explain.output.figures import caption_of
from lpips_explain.output.scale import SCALE_CSS, scale_html
from lpips_explain.ui import keys
from lpips_explain.ui.state import persistent

PLOTLY_CONFIG = {"displaylogo": False}
T = TypeVar("T")

ICONS = {
    "info": ":material/info:",
    "warning": ":material/warning:",
    "error": ":material/error:",
    "weights": ":material/inventory_2:",
    "vanish": ":material/blur_off:",
    "swap": ":material/swap_horiz:",
    "compare": ":material/compare:",
    "upload": ":material/upload:",
    "share": ":material/link:",
    "present": ":material/slideshow:",
    "download": ":material/download:",
}

# Every technical term the pages use, in one sentence each (tooltips and the glossary).
GLOSSARY: dict[str, str] = {
    "LPIPS": "Learned Perceptual Image Patch Similarity: a distance between two images "
             "computed from the features of an ImageNet network, weighted by learned 'lin' "
             "layers. 0 means identical to the network.",
    "trunk": "The network whose features LPIPS compares (AlexNet, VGG16 or SqueezeNet).",
    "layer": "One of the trunk's taps (relu1 ... relu5 for AlexNet). Shallow layers see "
             "colour and fine texture, deep layers see shapes and objects.",
    "channel": "One feature map of a layer. A channel's contribution is its lin weight "
               "times its squared feature difference, averaged over positions.",
    "lin weight": "The learned, non-negative weight LPIPS gives each channel. A channel with "
                  "weight 0 can never contribute to the distance.",
    "category": "A reading of the distance (very similar ... very different) from published "
                "limits; shown only for the published (perceptual) trunk.",
    "spatial map": "The distance per position: each layer's map at its own resolution "
                   "averages exactly to that layer's term.",
    "bilinear": "The official package's way to bring a layer's map to image size; its mean "
                "is only approximately the distance.",
    "mean-preserving": "Bilinear upsampling rescaled so that the map's mean is exactly the "
                       "distance (or the layer's term).",
    "attribution": "How much each pixel of the explained image adds to (red) or removes from "
                   "(blue) the distance, according to the chosen method.",
    "integrated gradients": "Gradients averaged along the straight path from the reference "
                            "to the explained image; they add up to the distance.",
    "completeness gap": "Distance minus the sum of the integrated-gradients attributions: "
                        "how far the map is from adding up exactly (0 is perfect).",
    "saliency": "The gradient of the distance with respect to each pixel.",
    "SmoothGrad": "Saliency averaged over noisy copies of the image.",
    "occlusion": "The change in distance when a window of the explained image is replaced "
                 "by the reference's pixels.",
    "Grad-CAM": "Gradient-weighted activations of one layer, upsampled to the image.",
    "PSNR": "Peak signal-to-noise ratio in dB: a pixel metric, higher means closer.",
    "SSIM": "Structural similarity: a pixel-statistics metric from 0 to 1, higher means "
            "closer. Here the Gaussian SSIM of Wang et al. (2004): 11x11 window, sigma 1.5, "
            "mean over RGB, data range 1.",
    "repair": "Replace patches of the explained image by the reference's pixels, in a "
              "named order (single-patch gain, greedy, or a map's patch sums), and measure "
              "the distance left after each patch.",
    "2AFC": "Two-alternative forced choice: of two candidates, which one is closer to the "
            "reference?",
    "margin": "d(REF, B) - d(REF, A): positive means A is closer to the reference.",
    "flip": "A repair of the losing candidate that makes it closer than the winner: the "
            "fewest patches among the orders tried; a smaller one may exist.",
    "random trunk": "A seeded network with random weights: the structure of every "
                    "explanation is the same, the numbers are not perceptual.",
}


# --- presentation mode and styling -------------------------------------------------------------


_UPLOADS = threading.local()  # this script run's drop zone (a session's run stays on one thread)


def reserve_upload_area() -> None:
    """Keep the top of the sidebar (under the page list) for the page's drop zone: on the
    first screen, and never moved by what the page draws while it computes."""
    _UPLOADS.area = st.sidebar.container()


def upload_area() -> Any:
    """The drop zone's container (the top of the sidebar; a new one if none was reserved)."""
    return getattr(_UPLOADS, "area", None) or st.sidebar.container()


def presenting() -> bool:
    """True in presentation mode (the toggle, or ``?present=1`` on the first visit)."""
    return bool(st.session_state.get(keys.PRESENT, False))


_STYLE = """
<style>
[data-testid="stMainBlockContainer"]{padding:3.25rem 2.5rem 3rem 2.5rem}
.st-key-run_state{position:sticky;top:3.75rem;z-index:990;background:var(--background-color,#fff)}
.st-key-run_state p{margin-bottom:0}
.lx-title{font-size:1.7rem;font-weight:700;line-height:1.2;margin:0}
.lx-title .lx-intro{font-size:.85rem;font-weight:400;color:#666;margin-left:.8rem}
.lx-distance{font-size:2.6rem;font-weight:700;line-height:1.05;margin:0}
.lx-category{font-size:1.15rem;font-weight:600;color:#444}
.lx-verdict{font-size:1.05rem;line-height:1.35;margin:.25rem 0 .1rem 0}
.lx-placement{font-size:.9rem;line-height:1.3;color:#333;margin:.2rem 0 0 0}
""" + SCALE_CSS + """.lx-small{font-size:.86rem;color:#444;line-height:1.4}
.lx-trunk-line{font-size:.9rem;font-weight:400;color:#8a5300;margin:0 0 0 1rem}
</style>
"""

_PRESENT_STYLE = """
<style>
[data-testid="stSidebar"],[data-testid="stSidebarCollapsedControl"],
[data-testid="stExpandSidebarButton"],[data-testid="stSidebarCollapseButton"]{display:none !important}
.lx-distance{font-size:3.6rem}
.lx-category{font-size:1.5rem}
.lx-verdict{font-size:1.3rem}
.lx-title{font-size:2.1rem}
.lx-intro{display:none}
</style>
"""


def style() -> None:
    """The pages' shared CSS (and, in presentation mode, the rules that hide the sidebar)."""
    st.html(_STYLE + (_PRESENT_STYLE if presenting() else ""))


# --- text ------------------------------------------------------------------------------------------


def plain(text: str) -> str:
    """Text for st.table cells, which render Markdown: "L*a*b*" must not turn italic."""
    return re.sub(r"([\\`*_~$\[\]])", r"\\\1", text)


def note(text: str, container: Any = None) -> None:
    """A caption (hidden in presentation mode)."""
    if not presenting() and text:
        (container or st).caption(text)


def term(name: str) -> str:
    """The glossary's sentence for a term (for ``help=`` tooltips)."""
    return GLOSSARY[name]


def glossary(terms: Iterable[str] | None = None) -> None:
    """The glossary as an expander at the end of a page (hidden in presentation mode)."""
    if presenting():
        return
    names = list(terms) if terms is not None else list(GLOSSARY)
    with st.expander("Glossary", icon=":material/menu_book:"):
        st.markdown("\n".join(f"- **{n}**: {GLOSSARY[n]}" for n in names))


def show_notices(warnings: Sequence[str], *, skip: Sequence[str] = (notices.RANDOM_TRUNK,)
                 ) -> None:
    """The result's notices, one st.info each (the random-trunk one is the page banner)."""
    for w in notices.without(warnings, *skip):
        st.info(w, icon=ICONS["info"])


# --- widgets -----------------------------------------------------------------------------------


def pick(label: str, options: Sequence[Any], key: str, default: Any, *, radio: bool = False,
         container: Any = st, **kwargs: Any) -> Any:
    """A keyed selectbox/radio, kept across pages; a stale value (another trunk's layer, an
    option no longer offered) falls back to the default."""
    options = list(options)
    widget = container.radio if radio else container.selectbox
    if radio:
        kwargs.setdefault("horizontal", True)
    return persistent(widget, label, options, key=key,
                      default=default if default in options else options[0], choices=options,
                      **kwargs)


def chart(fig: Any, key: str, *, caption: bool = True, container: Any = None,
          title: bool = True) -> None:
    """A plotly figure as built (its own colour scales; row 0 of every map at the top), and
    its one caption under it. A figure with a fixed pixel width keeps it (maps: their colour
    bar stays beside the image); others fill the column.

    Streamlit swaps plotly's default template for its own, which drops automatic margins:
    long tick labels (the sensitivity bars) would be cut off without ``automargin``.
    """
    where = container or st
    if _PREPARED.get(id(fig)) is not fig:  # a figure kept by drawn() has had this already
        fig.update_xaxes(automargin=True)
        fig.update_yaxes(automargin=True)
        if not title:
            fig.update_layout(title=None)
        _PREPARED[id(fig)] = fig
    width = "content" if fig.layout.width else "stretch"
    where.plotly_chart(fig, key=key, theme=None, config=PLOTLY_CONFIG, width=width)
    if caption:
        note(caption_of(fig), where)


# Figures chart() has given their margins (and title) already, by id (plotly figures are not
# hashable): a figure kept by drawn() is not redone. Held weakly: they go with their figures.
_PREPARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def drawn(name: str, build: Callable[[], T], *sources: Any, options: Hashable = ()) -> T:
    """``build()``, or what it returned on an earlier run of this session's page for the
    very same ``sources`` (by identity: the stored results a rerun finds again) and equal
    ``options`` (every display option the drawing depends on).

    Every click on a page reruns its script; rebuilding the Explain page's figures and
    images took about 70% of a rerun (benchmarks/bench_rerun.py: 0.45 s against 0.14 s
    on the default sample). One drawing is kept per ``name`` and session, the last one
    built: a new pair or a changed option replaces it, so what a session keeps is one
    page's worth, and an earlier pair's results are not kept alive by it. A drawing must
    depend on nothing but its sources and options, and must not be changed by its caller
    (chart() changes a figure once, :data:`_PREPARED`).
    """
    kept = st.session_state.setdefault(keys.DRAWN, {})
    hit = kept.get(name)
    if (hit is not None and hit[1] == options and len(hit[0]) == len(sources)
            and all(a is b for a, b in zip(hit[0], sources, strict=True))):
        return hit[2]
    value = build()
    kept[name] = (sources, options, value)
    return value


def table(rows: list[dict], key: str, *, formats: dict[str, str] | None = None,
          container: Any = None) -> None:
    """A dataframe with human column names (the keys of ``rows``) and number formats."""
    config = {}
    for col, fmt in (formats or {}).items():
        config[col] = st.column_config.NumberColumn(format=fmt)
    (container or st).dataframe(pd.DataFrame(rows), hide_index=True, key=key,
                                column_config=config)


# --- the distance scale ------------------------------------------------------------------------------


def category_limits(category: Category) -> tuple[float, ...]:
    """The category limits to mark on the scale: only stated ones (the shipped percentile
    table for the published trunk); none for any other trunk or where no table exists."""
    return tuple(category.limits or ())


def scale(marks: Sequence[tuple], limits: Sequence[float],
          container: Any = None, anchor: Any = None, no_anchor: str | None = None) -> None:
    """The distance scale with these category limits (none: a plain scale); ``anchor``: the
    trunk's fixed scale (output.scale.scale_html), ``no_anchor`` why there is none."""
    (container or st).html(scale_html(marks, limits, anchor, no_anchor))
