"""The sidebar shared by every page, the cached Explainer behind it and the weights notices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from lpips_explain.analyses.attribution import METHODS
from lpips_explain.core.trunks import TRUNKS
from lpips_explain.core.weights import (
    BACKBONE_ENV,
    VERSIONS,
    default_backbone_spec,
    imagenet_cache_path,
)
from lpips_explain.errors import WeightsUnavailableError
from lpips_explain.explainer import Explainer
from lpips_explain.intake.align import SIZE_POLICIES
from lpips_explain.notices import RANDOM_TRUNK_TEXT
from lpips_explain.ui import keys
from lpips_explain.ui.feedback import error_text
from lpips_explain.ui.resources import get_explainer
from lpips_explain.ui.state import persistent

BACKBONES: dict[str, str] = {
    "imagenet": "ImageNet (torchvision)",
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

    @property
    def attribution_params(self) -> dict:
        return dict(self.params)

    @property
    def model_key(self) -> tuple:
        return (self.net, self.version, self.backbone, self.seed, self.size_policy)

    @property
    def analysis_key(self) -> tuple:
        return (self.method, self.steps, self.params, self.top_k, self.patch)


def _default_backbone() -> tuple[str, str]:
    spec = default_backbone_spec()
    return (spec, "") if spec in ("imagenet", "random") else ("file", spec)


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

    method, steps, params, top_k, patch = DEFAULT_METHOD, None, (), 5, 32
    if analysis:
        sb.header("Explanation")
        method, steps, params = _attribution_controls(net)
        top_k = int(persistent(sb.slider, "Top channels per layer", 1, 10, key=keys.TOP_K,
                               default=5))
        patch = int(persistent(sb.select_slider, "Repair patch size (px)", PATCHES,
                               key=keys.PATCH, default=32, choices=PATCHES))
    return Options(net, version, backbone, seed, size_policy, method, steps, params, top_k,
                   patch)


def _attribution_controls(net: str) -> tuple[str, int | None, tuple[tuple[str, Any], ...]]:
    sb = st.sidebar
    method = persistent(sb.selectbox, "Attribution method", list(METHODS), key=keys.METHOD,
                        default=DEFAULT_METHOD, choices=METHODS,
                        format_func=lambda m: METHODS[m].label,
                        help="Which Captum method maps the distance onto pixels.")
    sb.caption(f"{METHODS[method].description} Cost: {METHODS[method].cost}.")
    if method == "integrated_gradients":
        raw = persistent(sb.select_slider, "Integration points", IG_STEPS, key=keys.IG_STEPS,
                         default="auto", choices=IG_STEPS,
                         help="auto: 8, 16, ... points until the completeness gap is under 1%.")
        return method, (None if raw == "auto" else int(raw)), ()
    if method == "occlusion":
        window = persistent(sb.select_slider, "Occlusion window (px)", OCCLUSION_WINDOWS,
                            key=keys.OCCLUSION_WINDOW, default=16, choices=OCCLUSION_WINDOWS)
        return method, None, (("window", int(window)),)
    if method == "layer_gradcam":
        names = list(TRUNKS[net].layer_names)
        layer = persistent(sb.selectbox, "Grad-CAM layer", names, key=keys.GRADCAM_LAYER,
                           default=names[-1], choices=names)
        return method, None, (("layer", layer),)
    if method == "smoothgrad":
        samples = persistent(sb.slider, "SmoothGrad samples", 2, 32,
                             key=keys.SMOOTHGRAD_SAMPLES, default=8)
        return method, None, (("samples", int(samples)),)
    return method, None, ()


# --- the model and its notices --------------------------------------------------------------


def _weights_advice(opts: Options, message: str) -> str:
    """What to do in the app (not CLI flags) when the chosen trunk weights are missing."""
    if opts.backbone not in ("imagenet", "random"):
        return (f"Check the path under 'Weights file' in the sidebar: it is read on the "
                f"machine running the app and must name a torchvision state_dict of the "
                f"{opts.net!r} trunk (the full model or its `features`). Or set 'Trunk "
                f"weights' to ImageNet (torchvision) or random. Meanwhile the app can run with "
                f"a random trunk: the structure of every explanation is the same, but the "
                f"numbers are not perceptual.")
    path = imagenet_cache_path(opts.net)
    cli = (" The --backbone-weights option named above belongs to the command line."
           if "--backbone-weights" in message else "")
    return (f"To use the real (perceptual) metric in the app, either put torchvision's file "
            f"`{path.name}` in the folder `{path.parent}` (it follows TORCH_HOME) and reload "
            f"the page, or choose 'local torchvision state_dict file' under 'Trunk weights' "
            f"in the sidebar and enter the path of a file you have, or restart the app with "
            f"{BACKBONE_ENV}=/path/to/weights.pth.{cli} Meanwhile the app can run with a random "
            f"trunk: the structure of every explanation is the same, but the numbers are not "
            f"perceptual.")


def load_explainer(opts: Options) -> Explainer:
    """The cached Explainer; missing weights offer a random trunk instead of failing."""
    try:
        return get_explainer(*opts.model_key)
    except WeightsUnavailableError as exc:
        st.error(str(exc), icon="📦")
        st.info(_weights_advice(opts, str(exc)))
        st.button("Continue with a random trunk (structure demo)", key=keys.USE_RANDOM,
                  on_click=use_random_trunk, type="primary")
        st.stop()
    except Exception as exc:  # a bad weights file, an unknown option: say so, no traceback
        st.error(error_text(exc, "loading the network"), icon="🚫")
        st.stop()


def weights_panel(explainer: Explainer) -> None:
    info = explainer.weights_info
    with st.sidebar.expander("Weights", expanded=not info.perceptual):
        st.markdown(f"**Trunk:** {info.source}")
        st.markdown(f"**Lin heads:** `{explainer.model.lin_file}`")
        st.markdown("**Perceptual metric:** " + ("yes" if info.perceptual else
                                                 "**no** (random trunk)"))


def random_banner(explainer: Explainer) -> None:
    if not explainer.perceptual:
        st.warning(RANDOM_TRUNK_TEXT, icon="⚠️")


def page_setup(title: str, intro: str, *, analysis: bool = True) -> tuple[Options, Explainer]:
    """Page config, title, shared sidebar, cached Explainer, weights panel and banner."""
    st.set_page_config(page_title=f"{title} · lpips-explain", page_icon="🔍", layout="wide")
    st.title(title)
    st.caption(intro)
    opts = sidebar(analysis=analysis)
    explainer = load_explainer(opts)
    weights_panel(explainer)
    random_banner(explainer)
    return opts, explainer
