"""The bundled sample images: manifest integrity, reproducibility and licensing notes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MANIFEST = ASSETS / "samples.json"
MAX_TOTAL_BYTES = 3 * 1024 * 1024


def _load_script():
    spec = importlib.util.spec_from_file_location("make_samples", ASSETS / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGB", f"{path} is {img.mode}, not RGB"
        return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def manifest() -> dict:
    assert MANIFEST.is_file(), "run `python assets/make_samples.py`"
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def _all_paths(manifest: dict) -> set[str]:
    paths = set()
    for pair in manifest["pairs"]:
        paths |= {pair["a"], pair["b"]}
    for trip in manifest["triplets"]:
        paths |= {trip["ref"], trip["a"], trip["b"]}
    paths |= {orig["path"] for orig in manifest.get("originals", [])}
    return paths


def test_manifest_structure(manifest):
    pairs, triplets = manifest["pairs"], manifest["triplets"]
    assert len(pairs) >= 5
    assert len(triplets) >= 2
    for pair in pairs:
        assert {"id", "title", "a", "b", "description"} <= pair.keys()
        assert pair["a"] != pair["b"]
    for trip in triplets:
        assert {"id", "title", "ref", "a", "b", "description"} <= trip.keys()
        assert len({trip["ref"], trip["a"], trip["b"]}) == 3
    ids = [item["id"] for item in pairs + triplets]
    assert len(ids) == len(set(ids)), "ids must be unique"
    assert manifest["default_pair"] in {p["id"] for p in pairs}
    assert manifest["default_triplet"] in {t["id"] for t in triplets}
    assert manifest["default_pair"] == pairs[0]["id"]
    assert manifest["default_triplet"] == triplets[0]["id"]


def test_every_path_exists_and_decodes_as_rgb(manifest):
    for rel in sorted(_all_paths(manifest)):
        assert not Path(rel).is_absolute() and ".." not in Path(rel).parts
        path = ASSETS / rel
        assert path.is_file(), rel
        arr = _rgb(path)
        assert arr.ndim == 3 and arr.shape[2] == 3


def test_sizes_match(manifest):
    for pair in manifest["pairs"]:
        assert _rgb(ASSETS / pair["a"]).shape == _rgb(ASSETS / pair["b"]).shape, pair["id"]
    for trip in manifest["triplets"]:
        shapes = {_rgb(ASSETS / trip[k]).shape for k in ("ref", "a", "b")}
        assert len(shapes) == 1, trip["id"]


def test_distorted_differs_from_original(manifest):
    comparisons = [(p["a"], p["b"]) for p in manifest["pairs"]]
    comparisons += [(t["ref"], t[k]) for t in manifest["triplets"] for k in ("a", "b")]
    for ref, dist in comparisons:
        x, y = _rgb(ASSETS / ref), _rgb(ASSETS / dist)
        assert x.shape == y.shape
        mad = np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()
        assert mad > 1.0, f"{dist} is nearly identical to {ref} (mean abs diff {mad:.3f})"


def test_regeneration_is_pixel_identical(tmp_path, manifest):
    # The script avoids float32 rounding hazards: resizing and JPEG coding are done by
    # Pillow (integer arithmetic; the JPEG variant is decoded and stored as PNG), the
    # torchvision distortions run in float64 before rounding to uint8, and the noise
    # comes from a seeded torch.Generator. So exact equality is expected.
    regenerated = _load_script().main(tmp_path)
    assert regenerated == manifest, "samples.json is stale: rerun assets/make_samples.py"
    committed = {p.relative_to(ASSETS) for p in ASSETS.rglob("*.png")}
    fresh = {p.relative_to(tmp_path) for p in tmp_path.rglob("*.png")}
    assert fresh <= committed, f"not committed: {sorted(map(str, fresh - committed))}"
    for rel in sorted(fresh):
        assert np.array_equal(_rgb(ASSETS / rel), _rgb(tmp_path / rel)), str(rel)


def test_readme_lists_originals_and_licences(manifest):
    readme = (ASSETS / "README.md").read_text(encoding="utf-8")
    script = _load_script()
    assert "make_samples.py" in readme
    for name, meta in script.ORIGINALS.items():
        assert f"originals/{name}.png" in readme
        assert meta["skimage"] in readme
        row = next(line for line in readme.splitlines() if f"originals/{name}.png" in line)
        assert "CC0" in row or "Public domain" in row, row
    for item in manifest["pairs"] + manifest["triplets"]:
        assert item["id"] in readme, item["id"]


def test_total_size_is_small():
    total = sum(
        p.stat().st_size for p in ASSETS.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert total < MAX_TOTAL_BYTES, f"assets/ is {total} bytes"
