"""The audit's per-row computation and its summary, shared by every engine.

One row is a pair (a, b) or a judged triplet (ref, p0, p1, judge). :func:`decode_row` reads
and aligns a row's images and computes its PSNR and SSIM (the definitions of
:mod:`~lpips_explain.analyses.pair.quality`); it runs in worker processes or Ray actors, beside
the model. :func:`score_rows` scores decoded rows in batches on one
:class:`~lpips_explain.core.model.LpipsNet`: the LPIPS distance with its exact per-layer
terms; for triplets both distances, the verdict, the human judgment and the official 2AFC
score. :func:`make_record` turns a row into the output columns, and
:func:`summarize` computes the summary (counts, rank correlations, rank disagreements,
outliers, 2AFC agreement and the layers behind the disagreements).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lpips_explain.analyses.calibration import two_afc
from lpips_explain.analyses.pair.quality import psnr_pairs, ssim_pairs
from lpips_explain.core.cache import CacheView, FeatureCache
from lpips_explain.core.model import LpipsNet, build_lpips
from lpips_explain.core.trunks import check_min_size, get_trunk
from lpips_explain.errors import InputError, LpipsExplainError
from lpips_explain.intake.align import SIZE_POLICIES, align_images
from lpips_explain.intake.images import load_image
from lpips_explain.intake.table import ROLES, AuditRow
from lpips_explain.intake.tensors import to_uint8

SCHEMA = "lpips-explain/audit/1"
THUMB_SIDE = 64
# Rows scored together share one trunk pass; big images get fewer rows per batch.
PIXELS_PER_BATCH = 16 * 256 * 256


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AuditSettings:
    """What an audit's numbers depend on besides the input: every engine builds from this."""

    net: str = "alex"
    version: str = "0.1"
    backbone_weights: str = "imagenet"  # resolved: "imagenet", "random" or a path
    seed: int = 0
    lin_weights: str | None = None
    size_policy: str = "resize"
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        get_trunk(self.net)
        if self.size_policy not in SIZE_POLICIES:
            raise InputError(f"Unknown size policy {self.size_policy!r}; choose one of "
                             f"{', '.join(SIZE_POLICIES)}.")

    def build(self, *, progress: bool = False) -> LpipsNet:
        return build_lpips(self.net, self.version, self.backbone_weights, self.seed,
                           lin_weights=self.lin_weights, progress=progress)

    def to_dict(self) -> dict:
        return asdict(self)


def model_fingerprint(net: LpipsNet) -> str:
    """A hash of every weight of the network: two engines agree only on the same model."""
    h = hashlib.sha256(f"{net.spec.name}|{net.version}".encode())
    for name, t in sorted({**dict(net.named_parameters()), **dict(net.named_buffers())}.items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Decoded:
    """One row after decoding: its aligned images (1x3xHxW in [0, 1]) or why it failed."""

    position: int  # where the row sits in the list handed to the engine
    tensors: tuple[Tensor, ...] | None
    thumbs: tuple[bytes, ...]
    notes: str
    error: str | None = None
    error_type: str | None = None
    metrics: tuple[tuple[str, float], ...] = ()  # PSNR and SSIM, computed while decoding

    @property
    def ok(self) -> bool:
        return self.tensors is not None

    @property
    def size(self) -> tuple[int, int]:
        t = self.tensors[0] if self.tensors else None
        return (int(t.shape[-2]), int(t.shape[-1])) if t is not None else (0, 0)


def thumbnail(t: Tensor, side: int = THUMB_SIDE) -> bytes:
    """A small JPEG of a 1x3xHxW image for the report's table."""
    im = Image.fromarray(to_uint8(t))
    im.thumbnail((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def decode_row(row: AuditRow, kind: str, settings: AuditSettings, position: int = 0,
               *, thumbs: bool = True) -> Decoded:
    """Read, check and align the images of one row; any failure is recorded, not raised."""
    roles = ROLES[kind]
    if row.problem:
        return Decoded(position, None, (), "", row.problem, "BadRow")
    labels = [r.upper() if r != "ref" else "REF" for r in roles]
    try:
        loaded = []
        for role, label, path in zip(roles, labels, row.images, strict=True):
            if not os.path.isfile(path):
                shown = row.shown[roles.index(role)]
                reason = "is a folder" if os.path.isdir(path) else "does not exist"
                return Decoded(position, None, (), "", f"{role}: the file {shown!r} {reason}",
                               "MissingFile")
            try:
                im = load_image(path, max_pixels=settings.max_pixels)
                check_min_size(im.size, settings.net, label=f"image {label} ({im.name})")
            except LpipsExplainError as exc:
                exc.args = (f"{role}: {exc}",)
                raise
            loaded.append(im)
        tensors, info = align_images(loaded, settings.size_policy, labels)
        check_min_size(info.size, settings.net, label="the aligned images")
    except LpipsExplainError as exc:
        return Decoded(position, None, (), "", str(exc), type(exc).__name__)
    except Exception as exc:  # a decoder bug must not end a run of thousands of rows
        return Decoded(position, None, (), "", f"{type(exc).__name__}: {exc}",
                       type(exc).__name__)
    notes = [f"{lab}: {w}" for im, lab in zip(loaded, labels, strict=True) for w in im.warnings]
    notes += list(info.notes)
    shots = tuple(thumbnail(t) for t in tensors) if thumbs else ()
    return Decoded(position, tuple(tensors), shots, "; ".join(notes),
                   metrics=pixel_metrics(kind, tensors))


def pixel_metrics(kind: str, tensors: Sequence[Tensor]) -> tuple[tuple[str, float], ...]:
    """PSNR and SSIM of one decoded row (pairs: a against b; triplets: ref against p0 and
    p1). Computed where the row is decoded (a worker process), beside the model's work."""
    if kind == "pairs":
        a, b = tensors
        return (("psnr", float(psnr_pairs(a, b, trusted=True)[0])),
                ("ssim", float(ssim_pairs(a, b, trusted=True)[0])))
    ref, p0, p1 = tensors
    refs, cands = torch.cat([ref, ref]), torch.cat([p0, p1])
    ps, ss = psnr_pairs(refs, cands, trusted=True), ssim_pairs(refs, cands, trusted=True)
    return (("psnr0", float(ps[0])), ("psnr1", float(ps[1])), ("ssim0", float(ss[0])),
            ("ssim1", float(ss[1])))


# --------------------------------------------------------------------------- metrics


def _device(net: LpipsNet) -> torch.device:
    return net.head0.device


def encode_references(net: LpipsNet, x: Tensor,
                      cache: FeatureCache | CacheView | None) -> list[Tensor]:
    """``net.encode(x)``; with a ``cache``, each distinct image of ``x`` (content hash) is
    encoded once, rows repeating it share that pass, and an image encoded in an earlier
    batch is taken from the cache (datasets often hold one reference against many
    distortions)."""
    if cache is None:
        return net.encode(x)
    keys = cache.row_keys(net, x)
    first: dict[tuple, int] = {}  # each distinct key -> its first row
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    found = {key: list(hit) for key in first if (hit := cache.get(key)) is not None}
    missing = [key for key in first if key not in found]
    if missing:
        feats = net.encode(x[[first[key] for key in missing]])
        for j, key in enumerate(missing):  # clones: an entry must not pin the whole batch
            found[key] = [y[j:j + 1].clone() for y in feats]
            cache.put(key, found[key])
    return [torch.cat([found[k][layer] for k in keys])
            for layer in range(len(found[keys[0]]))]


@torch.no_grad()
def layer_terms(net: LpipsNet, x: Tensor, *others: Tensor,
                cache: FeatureCache | CacheView | None = None) -> list[np.ndarray]:
    """Per-layer LPIPS terms of (x, o) for each o in ``others`` (N x L, float64 each).

    One trunk pass over the distinct images of x (see :func:`encode_references`) and one over
    all of ``others``; each row's terms add up to its distance.
    """
    refs = encode_references(net, x, cache)
    feats = net.encode(torch.cat(others))
    n = x.shape[0]
    out = []
    for k in range(len(others)):
        lo, hi = k * n, (k + 1) * n
        cols = [F.conv2d((r - y[lo:hi]) ** 2, w).mean(dim=(1, 2, 3))
                for r, y, w in zip(refs, feats, net.heads, strict=True)]
        out.append(torch.stack(cols, dim=1).to("cpu", torch.float64).numpy())
    return out


def _batches(items: Sequence[Decoded], batch_size: int) -> list[list[Decoded]]:
    """Decoded rows grouped by image size, at most ``batch_size`` (and a pixel budget) each."""
    groups: dict[tuple[int, int], list[Decoded]] = defaultdict(list)
    for d in items:
        groups[d.size].append(d)
    out = []
    for (h, w), group in groups.items():
        step = max(1, min(batch_size, PIXELS_PER_BATCH // max(1, h * w)))
        out += [group[i: i + step] for i in range(0, len(group), step)]
    return out


def score_rows(net: LpipsNet, kind: str, items: Sequence[Decoded], *,
               batch_size: int = 16,
               cache: FeatureCache | CacheView | None = None) -> dict[int, dict[str, Any]]:
    """Scores of decoded rows, keyed by their ``position``: the numbers of :func:`make_record`.

    ``cache``: the first image of each row (a pair's A, a triplet's reference) is encoded
    through it, so a reference shared by many rows runs the trunk once.
    """
    dev = _device(net)
    out: dict[int, dict[str, Any]] = {}
    for batch in _batches([d for d in items if d.ok], batch_size):
        stacks = [torch.cat([d.tensors[k] for d in batch]).to(dev)  # type: ignore[index]
                  for k in range(len(ROLES[kind]))]
        if kind == "pairs":
            (terms,) = layer_terms(net, stacks[0], stacks[1], cache=cache)
            for i, d in enumerate(batch):
                out[d.position] = {"terms": terms[i], **dict(d.metrics)}
        else:
            t0, t1 = layer_terms(net, stacks[0], stacks[1], stacks[2], cache=cache)
            for i, d in enumerate(batch):
                out[d.position] = {"terms0": t0[i], "terms1": t1[i], **dict(d.metrics)}
    return out


# --------------------------------------------------------------------------- records


def columns(kind: str, layer_names: Sequence[str],
            extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The output columns (name, type) of audit.parquet, in order; types are
    string, float64, int64, bool. Engines add ``signature`` and the ``thumb_<role>`` blobs
    to their parts; the final file drops them."""
    roles = ROLES[kind]
    cols = [("id", "string"), *[(r, "string") for r in roles]]
    if kind == "triplets":
        cols.append(("judge", "float64"))
    cols += [("status", "string"), ("error_type", "string"), ("error", "string")]
    if kind == "pairs":
        cols += [("distance", "float64"), ("psnr", "float64"), ("ssim", "float64"),
                 *[(f"share_{n}", "float64") for n in layer_names],
                 ("dominant_layer", "string")]
    else:
        cols += [("d0", "float64"), ("d1", "float64"), ("margin", "float64"),
                 ("verdict", "string"), ("human", "string"), ("agree", "bool"),
                 ("score_2afc", "float64"), ("psnr0", "float64"), ("psnr1", "float64"),
                 ("ssim0", "float64"), ("ssim1", "float64"),
                 *[(f"margin_{n}", "float64") for n in layer_names]]
    cols += [("height", "int64"), ("width", "int64"), ("notes", "string")]
    cols += [(name, "string") for name in extra]
    return cols


def internal_columns(kind: str) -> list[tuple[str, str]]:
    """Columns the engines' parts carry beyond audit.parquet's."""
    return [("signature", "string"), *[(f"thumb_{r}", "binary") for r in ROLES[kind]]]


def part_columns(kind: str, layer_names: Sequence[str]) -> list[tuple[str, str]]:
    """The columns an engine writes to its parts: what :func:`make_record` returns."""
    skip = set(input_columns(kind))
    return [c for c in columns(kind, layer_names) if c[0] not in skip] + internal_columns(kind)


def file_stem(row_id: str) -> str:
    """A file-name-safe, unique stem for a row id (thumbnails, explanation folders)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", row_id).strip("._")[:60] or "row"
    if safe == row_id:
        return safe
    return f"{safe}-{hashlib.sha256(row_id.encode()).hexdigest()[:8]}"


def _choice(margin: float) -> str:
    """Which candidate is closer from d1 - d0 (positive: p0)."""
    return "p0" if margin > 0 else "p1" if margin < 0 else "tie"


def make_record(kind: str, row: AuditRow, decoded: Decoded, score: Mapping[str, Any] | None,
                layer_names: Sequence[str], signature: str) -> dict[str, Any]:
    """What an engine computed for one row: the computed columns of :func:`columns` (the
    input's own columns are added back from the input when the results are assembled), the
    row's ``signature`` and its thumbnails."""
    roles = ROLES[kind]
    ok = decoded.ok and score is not None
    rec: dict[str, Any] = {"id": row.id, "status": "ok" if ok else "failed",
                           "error_type": decoded.error_type, "error": decoded.error}
    if kind == "pairs":
        terms = np.asarray(score["terms"]) if ok else None  # type: ignore[index]
        d = float(terms.sum()) if terms is not None else None
        rec.update(distance=d, psnr=score["psnr"] if ok else None,  # type: ignore[index]
                   ssim=score["ssim"] if ok else None)  # type: ignore[index]
        for k, n in enumerate(layer_names):
            rec[f"share_{n}"] = (float(terms[k] / d) if d else 0.0) if terms is not None else None
        rec["dominant_layer"] = layer_names[int(np.argmax(terms))] if terms is not None else None
    else:
        t0 = np.asarray(score["terms0"]) if ok else None  # type: ignore[index]
        t1 = np.asarray(score["terms1"]) if ok else None  # type: ignore[index]
        d0 = float(t0.sum()) if t0 is not None else None
        d1 = float(t1.sum()) if t1 is not None else None
        margin = d1 - d0 if d0 is not None and d1 is not None else None
        verdict = _choice(margin) if margin is not None else None
        judge = row.judge
        human = None
        if ok and judge is not None:
            human = "p0" if judge < 0.5 else "p1" if judge > 0.5 else "tie"
        agree = None
        if verdict is not None and human is not None and "tie" not in (verdict, human):
            agree = verdict == human
        rec.update(d0=d0, d1=d1, margin=margin, verdict=verdict, human=human, agree=agree,
                   score_2afc=float(two_afc(d0, d1, judge)) if human is not None else None)
        for key in ("psnr0", "psnr1", "ssim0", "ssim1"):
            rec[key] = score[key] if ok else None  # type: ignore[index]
        for k, n in enumerate(layer_names):
            rec[f"margin_{n}"] = float(t1[k] - t0[k]) if ok else None  # type: ignore[index]
    h, w = decoded.size
    rec.update(height=h if ok else None, width=w if ok else None, notes=decoded.notes or None)
    rec["signature"] = signature
    for k, r in enumerate(roles):
        rec[f"thumb_{r}"] = decoded.thumbs[k] if k < len(decoded.thumbs) else None
    return rec


def input_columns(kind: str) -> list[str]:
    """The columns audit.parquet takes from the input itself (besides id and the extras)."""
    return [*ROLES[kind], *(["judge"] if kind == "triplets" else [])]


# --------------------------------------------------------------------------- summary


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if x.size < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return None
    rho = spearmanr(x, y).statistic
    return float(rho) if math.isfinite(rho) else None


def _pct_rank(x: np.ndarray) -> np.ndarray:
    """Average ranks scaled to (0, 1]: 1 is the largest value."""
    from scipy.stats import rankdata

    return rankdata(x) / x.size


def _num(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _stats(x: np.ndarray) -> dict[str, float] | None:
    if x.size == 0:
        return None
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return {"mean": float(x.mean()), "median": float(med), "q1": float(q1), "q3": float(q3),
            "min": float(x.min()), "max": float(x.max())}


def _rank_gaps(ids: Sequence[str], lp: np.ndarray, other: np.ndarray, top: int,
               lp_name: str, other_name: str, values: Mapping[str, np.ndarray]) -> list[dict]:
    """Rows whose LPIPS rank and ``other`` rank differ most (both oriented the same way)."""
    if lp.size < 2:
        return []
    r_lp, r_other = _pct_rank(lp), _pct_rank(other)
    gap = r_lp - r_other
    order = np.argsort(-np.abs(gap), kind="stable")[:top]
    out = []
    for i in order:
        item = {"id": ids[i], f"{lp_name}_rank": float(r_lp[i]),
                f"{other_name}_rank": float(r_other[i]), "gap": float(gap[i])}
        item.update({k: (float(v[i]) if math.isfinite(v[i]) else None)
                     for k, v in values.items()})
        out.append(item)
    return out


def summarize(kind: str, data: Mapping[str, Sequence[Any]], layer_names: Sequence[str], *,
              top: int = 10) -> dict[str, Any]:
    """The audit's summary from its columns (as :func:`columns` names them).

    Rank correlations are Spearman's rho between LPIPS and the pixel metric oriented the
    same way (pairs: distance against -PSNR and -SSIM; triplets: the LPIPS margin d1 - d0
    against PSNR and SSIM's own p0-over-p1 margins), so +1 means the same order.
    """
    ids = list(data["id"])
    status = list(data["status"])
    ok = np.array([s == "ok" for s in status], dtype=bool)
    failures = Counter(t for t, s in zip(data["error_type"], status, strict=True) if s != "ok")
    out: dict[str, Any] = {
        "counts": {"rows": len(ids), "scored": int(ok.sum()), "failed": int((~ok).sum()),
                   "failed_by_type": dict(sorted(failures.items()))},
        "failures": [{"id": i, "error_type": t, "error": e}
                     for i, s, t, e in zip(ids, status, data["error_type"], data["error"],
                                           strict=True) if s != "ok"][:top * 10],
    }
    okids = [i for i, k in zip(ids, ok, strict=True) if k]
    if kind == "pairs":
        _summarize_pairs(out, data, ok, okids, layer_names, top)
    else:
        _summarize_triplets(out, data, ok, okids, layer_names, top)
    return out


def _finding(name: str, title: str, ids: Sequence[str]) -> dict[str, Any]:
    return {"name": name, "title": title, "ids": list(ids)}


def _summarize_pairs(out: dict, data: Mapping[str, Sequence[Any]], ok: np.ndarray,
                     okids: list[str], layer_names: Sequence[str], top: int) -> None:
    d = _num(data["distance"])[ok]
    ps, ss = _num(data["psnr"])[ok], _num(data["ssim"])[ok]
    out["distance"] = _stats(d)
    out["rank_correlation"] = {
        "method": "spearman", "psnr": _spearman(d, -ps), "ssim": _spearman(d, -ss),
        "note": "Spearman's rho of the LPIPS distance with -PSNR and with -SSIM (all three "
                "oriented as dissimilarities): +1 is the same order, 0 none, -1 the reverse."}
    vals = {"distance": d, "psnr": ps, "ssim": ss}
    gaps = {"psnr": _rank_gaps(okids, d, -ps, top, "lpips", "psnr", vals),
            "ssim": _rank_gaps(okids, d, -ss, top, "lpips", "ssim", vals)}
    out["rank_disagreements"] = {**gaps, "note": (
        "Rows whose rank by LPIPS distance and by the pixel metric differ most; ranks are "
        "percentiles of dissimilarity (1 = the most different row); gap = lpips_rank - "
        "other_rank, positive where LPIPS finds the pair more different than the pixel metric "
        "does.")}
    shares = {n: _num(data[f"share_{n}"])[ok] for n in layer_names}
    dominant = Counter(v for v, k in zip(data["dominant_layer"], ok, strict=True) if k)
    out["layers"] = {"mean_share": {n: (float(s.mean()) if s.size else None)
                                    for n, s in shares.items()},
                     "dominant_counts": {n: int(dominant.get(n, 0)) for n in layer_names}}
    out["outliers"] = _outliers(okids, d, data, ok, top)
    largest = [okids[i] for i in np.argsort(-d, kind="stable")[:top]]
    out["findings"] = [
        _finding("largest_distance", "Largest LPIPS distances", largest),
        _finding("rank_gap_ssim", "LPIPS and SSIM rank most differently",
                 [g["id"] for g in gaps["ssim"]]),
        _finding("rank_gap_psnr", "LPIPS and PSNR rank most differently",
                 [g["id"] for g in gaps["psnr"]]),
        _finding("outliers", "Outlying LPIPS distances (Tukey fences)",
                 [o["id"] for o in out["outliers"]["rows"]]),
    ]


def _outliers(okids: list[str], d: np.ndarray, data: Mapping[str, Sequence[Any]],
              ok: np.ndarray, top: int) -> dict[str, Any]:
    rule = "Tukey fences on the distance: below Q1 - 1.5 IQR or above Q3 + 1.5 IQR"
    if d.size < 4:
        return {"rule": rule, "low": None, "high": None, "count": 0, "rows": []}
    q1, q3 = np.percentile(d, [25, 75])
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    dominant = [v for v, k in zip(data["dominant_layer"], ok, strict=True) if k]
    beyond = np.maximum(d - hi, lo - d)
    idx = [i for i in np.argsort(-beyond, kind="stable") if beyond[i] > 0]
    rows = [{"id": okids[i], "distance": float(d[i]), "side": "high" if d[i] > hi else "low",
             "dominant_layer": dominant[i]} for i in idx[:top]]
    return {"rule": rule, "low": float(lo), "high": float(hi), "count": len(idx), "rows": rows}


def _summarize_triplets(out: dict, data: Mapping[str, Sequence[Any]], ok: np.ndarray,
                        okids: list[str], layer_names: Sequence[str], top: int) -> None:
    d0, d1 = _num(data["d0"])[ok], _num(data["d1"])[ok]
    g = _num(data["judge"])[ok]
    m = d1 - d0
    ps_m = _num(data["psnr0"])[ok] - _num(data["psnr1"])[ok]
    ss_m = _num(data["ssim0"])[ok] - _num(data["ssim1"])[ok]
    out["distance"] = _stats(np.concatenate([d0, d1]))
    agree = [a for a, k in zip(data["agree"], ok, strict=True) if k]
    n_agree = sum(a is True for a in agree)
    n_dis = sum(a is False for a in agree)

    def afc(margin: np.ndarray) -> float | None:  # margin > 0: p0 preferred
        if not margin.size:
            return None
        return float(np.mean(two_afc(0.0, margin, g)))  # d0 = 0, d1 = margin

    out["agreement"] = {
        "judged": int(ok.sum()), "lpips_2afc": afc(m), "psnr_2afc": afc(ps_m),
        "ssim_2afc": afc(ss_m), "agree": n_agree, "disagree": n_dis,
        "undecided": len(agree) - n_agree - n_dis,
        "note": "2AFC score: the mean over triplets of (d0<d1)(1-judge) + (d1<d0)judge + "
                "0.5[d0=d1], judge being the share of people preferring p1 (1 = always "
                "agrees with every judge). agree/disagree count triplets where LPIPS and the "
                "majority of judges pick different candidates (ties in either are undecided)."}
    out["rank_correlation"] = {
        "method": "spearman", "psnr": _spearman(m, ps_m), "ssim": _spearman(m, ss_m),
        "note": "Spearman's rho of the LPIPS margin d1 - d0 with PSNR's (psnr0 - psnr1) and "
                "SSIM's (ssim0 - ssim1) margins, all positive where p0 is preferred: +1 is "
                "the same order."}
    vals = {"margin": m, "judge": g}
    gaps = {"psnr": _rank_gaps(okids, m, ps_m, top, "lpips", "psnr", vals),
            "ssim": _rank_gaps(okids, m, ss_m, top, "lpips", "ssim", vals)}
    out["rank_disagreements"] = {**gaps, "note": (
        "Triplets whose rank by LPIPS margin and by the pixel metric's margin differ most "
        "(percentile ranks; gap = lpips_rank - other_rank).")}
    # Disagreements with the judges, strongest human preference first, then largest margin.
    dis = [i for i, a in enumerate(agree) if a is False]
    dis.sort(key=lambda i: (-abs(g[i] - 0.5), -abs(m[i])))
    out["disagreements"] = [{"id": okids[i], "judge": float(g[i]), "d0": float(d0[i]),
                             "d1": float(d1[i]), "margin": float(m[i]),
                             "verdict": _choice(m[i])} for i in dis[:top]]
    out["disagreement_layers"] = _disagreement_layers(data, ok, dis, m, layer_names)
    closest = [okids[i] for i in np.argsort(np.abs(m), kind="stable")[:top]]
    out["findings"] = [
        _finding("judge_disagreements", "LPIPS disagrees with the judges",
                 [x["id"] for x in out["disagreements"]]),
        _finding("rank_gap_ssim", "LPIPS and SSIM rank the margins most differently",
                 [x["id"] for x in gaps["ssim"]]),
        _finding("rank_gap_psnr", "LPIPS and PSNR rank the margins most differently",
                 [x["id"] for x in gaps["psnr"]]),
        _finding("closest_calls", "Smallest LPIPS margins (closest calls)", closest),
    ]


def _disagreement_layers(data: Mapping[str, Sequence[Any]], ok: np.ndarray, dis: list[int],
                         m: np.ndarray, layer_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per layer, over the triplets where LPIPS disagrees with the judges: in how many the
    layer's margin pushed towards LPIPS's (wrong) pick, its mean share of that push, and in
    how many the verdict would have agreed with the judges without that layer's term."""
    if not dis:
        return []
    margins = np.stack([_num(data[f"margin_{n}"])[ok] for n in layer_names], axis=1)[dis]
    sign = np.sign(m[dis])[:, None]  # +1 where LPIPS picked p0
    push = np.clip(sign * margins, 0, None)
    total = push.sum(axis=1, keepdims=True)
    share = np.divide(push, total, out=np.zeros_like(push), where=total > 0)
    decisive = sign * (m[dis][:, None] - margins) <= 0
    rows = [{"layer": n, "rows_pushing": int((push[:, k] > 0).sum()),
             "mean_share": float(share[:, k].mean()), "decisive": int(decisive[:, k].sum())}
            for k, n in enumerate(layer_names)]
    return sorted(rows, key=lambda r: -r["mean_share"])


def explain_targets(summary: Mapping[str, Any], n: int) -> list[tuple[str, str]]:
    """(finding name, row id) for the top ``n`` rows of each finding, each row once."""
    seen: set[str] = set()
    out = []
    for f in summary.get("findings", []):
        for rid in f["ids"][:n]:
            if rid not in seen:
                seen.add(rid)
                out.append((f["name"], rid))
    return out
