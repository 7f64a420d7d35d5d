"""One row's computation, shared by every engine: decode, score, record.

One row is a pair (a, b) or a judged triplet (ref, p0, p1, judge). :func:`decode_row` reads
and aligns a row's images and computes its PSNR and SSIM (the definitions of
:mod:`~lpips_explain.analyses.pair.quality`); it runs in worker processes or Ray actors, beside
the model. :func:`score_rows` scores decoded rows in batches on one
:class:`~lpips_explain.core.model.LpipsNet`: the LPIPS distance with its exact per-layer
terms; for triplets both distances. :func:`make_record` turns a row into the output columns
(:mod:`~lpips_explain.audit.columns`): for triplets also the verdict, the human judgment and
the official 2AFC score.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lpips_explain.analyses.calibration.result import two_afc
from lpips_explain.analyses.pair.quality import psnr_pairs, ssim_pairs
from lpips_explain.audit.columns import ROLES, pick
from lpips_explain.audit.settings import AuditSettings
from lpips_explain.audit.table import AuditRow
from lpips_explain.core.cache import CacheView, FeatureCache
from lpips_explain.core.model import LpipsNet, tracked
from lpips_explain.core.trunks import check_min_size
from lpips_explain.errors import LpipsExplainError
from lpips_explain.intake.align import align_images
from lpips_explain.intake.images import load_image
from lpips_explain.intake.tensors import to_uint8

THUMB_SIDE = 64
# Rows scored together share one trunk pass; big images get fewer rows per batch.
PIXELS_PER_BATCH = 16 * 256 * 256


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
    metrics: tuple[tuple[str, float], ...] = ()  # unused: score_rows computes PSNR and SSIM

    @property
    def ok(self) -> bool:
        return self.tensors is not None

    @property
    def size(self) -> tuple[int, int]:
        t = self.tensors[0] if self.tensors else None
        return (int(t.shape[-2]), int(t.shape[-1])) if t is not None else (0, 0)


def thumbnail(t: Tensor, side: int = THUMB_SIDE) -> bytes:
    """A small JPEG of a 1x3xHxW image for the report's table (at most ``side`` px a side).

    The image is shrunk by area averaging in torch first, so only the small image is
    converted to bytes (converting the whole image cost more than scoring it)."""
    h, w = int(t.shape[-2]), int(t.shape[-1])
    scale = side / max(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        t = F.interpolate(t.detach().to("cpu", torch.float32), size=size, mode="area")
    buf = io.BytesIO()
    Image.fromarray(to_uint8(t)).save(buf, format="JPEG", quality=80)
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
    # PSNR and SSIM are computed by score_rows, batched over the rows scored together.
    return Decoded(position, tuple(tensors), shots, "; ".join(notes))


def pixel_metrics(kind: str, tensors: Sequence[Tensor]) -> tuple[tuple[str, float], ...]:
    """PSNR and SSIM of one decoded row (pairs: a against b; triplets: ref against p0 and
    p1); :func:`batch_pixel_metrics` computes the same for many rows at once."""
    if kind == "pairs":
        a, b = tensors
        return (("psnr", float(psnr_pairs(a, b, trusted=True)[0])),
                ("ssim", float(ssim_pairs(a, b, trusted=True)[0])))
    ref, p0, p1 = tensors
    refs, cands = torch.cat([ref, ref]), torch.cat([p0, p1])
    ps, ss = psnr_pairs(refs, cands, trusted=True), ssim_pairs(refs, cands, trusted=True)
    return (("psnr0", float(ps[0])), ("psnr1", float(ps[1])), ("ssim0", float(ss[0])),
            ("ssim1", float(ss[1])))


def batch_pixel_metrics(kind: str, stacks: Sequence[Tensor]) -> list[dict[str, float]]:
    """:func:`pixel_metrics` of every row of a batch (``stacks``: one N x 3 x H x W tensor per
    role), in one batched PSNR and one batched SSIM pass (each row's planes are filtered on
    their own, so the values are those of :func:`pixel_metrics` to float32 rounding)."""
    if kind == "pairs":
        a, b = stacks
        ps, ss = psnr_pairs(a, b, trusted=True), ssim_pairs(a, b, trusted=True)
        return [{"psnr": float(p), "ssim": float(q)} for p, q in zip(ps, ss, strict=True)]
    ref, p0, p1 = stacks
    n = int(ref.shape[0])
    refs, cands = torch.cat([ref, ref]), torch.cat([p0, p1])
    ps, ss = psnr_pairs(refs, cands, trusted=True), ssim_pairs(refs, cands, trusted=True)
    return [{"psnr0": float(ps[i]), "psnr1": float(ps[n + i]), "ssim0": float(ss[i]),
             "ssim1": float(ss[n + i])} for i in range(n)]


# --------------------------------------------------------------------------- scoring


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
    if cache is None:  # one trunk pass over every image of the batch
        both = net.encode(torch.cat([x, *others]))
        refs = [f[: x.shape[0]] for f in both]
        feats = [f[x.shape[0]:] for f in both]
    else:
        refs = encode_references(net, x, cache)
        feats = net.encode(torch.cat(others))
    n = x.shape[0]
    out = []
    for k in range(len(others)):
        lo, hi = k * n, (k + 1) * n
        # (y - r)^2 formed in the candidates' fresh features: the numbers of (r - y)^2.
        cols = [F.conv2d((r - y[lo:hi]) ** 2 if tracked(y) else y[lo:hi].sub_(r).square_(),
                         w).mean(dim=(1, 2, 3))
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
               cache: FeatureCache | CacheView | None = None,
               shared: Container[int] | None = None,
               metrics: Mapping[str, torch.nn.Module] | None = None,
               ) -> dict[int, dict[str, Any]]:
    """Scores of decoded rows, keyed by their ``position``: the numbers of :func:`make_record`
    (the per-layer terms, PSNR and SSIM, each computed batched over rows of one size).

    ``cache``: the first image of each row (a pair's A, a triplet's reference) is encoded
    through it, so a reference shared by many rows runs the trunk once. ``shared``: the
    positions whose reference is also another row's; the other rows skip the cache (storing
    a reference nobody asks for again costs a copy of its features) and run the trunk once
    over all their images. None: every row goes through ``cache``. ``metrics``: the
    networks of the optional metric columns by name (each called as ``net(x, y)`` on the
    batch: one trunk pass over both images, exact float32).
    """
    dev = _device(net)
    out: dict[int, dict[str, Any]] = {}
    ok = [d for d in items if d.ok]
    if cache is not None and shared is not None:
        groups = [([d for d in ok if d.position in shared], cache),
                  ([d for d in ok if d.position not in shared], None)]
    else:
        groups = [(ok, cache)]
    for group, via in groups:
        for batch in _batches(group, batch_size):
            stacks = [torch.cat([d.tensors[k] for d in batch])  # type: ignore[index]
                      for k in range(len(ROLES[kind]))]
            pixel = batch_pixel_metrics(kind, stacks)
            stacks = [s.to(dev) for s in stacks]
            extra = metric_values(kind, metrics or {}, stacks)
            if kind == "pairs":
                (terms,) = layer_terms(net, stacks[0], stacks[1], cache=via)
                for i, d in enumerate(batch):
                    out[d.position] = {"terms": terms[i], **pixel[i], **extra[i]}
            else:
                t0, t1 = layer_terms(net, stacks[0], stacks[1], stacks[2], cache=via)
                for i, d in enumerate(batch):
                    out[d.position] = {"terms0": t0[i], "terms1": t1[i], **pixel[i],
                                       **extra[i]}
    return out


@torch.no_grad()
def metric_values(kind: str, metrics: Mapping[str, torch.nn.Module],
                  stacks: Sequence[Tensor]) -> list[dict[str, Any]]:
    """The optional metric columns of a batch (pairs ``<m>``, triplets ``<m>0``, ``<m>1``);
    a metric that cannot score these images (e.g. below its minimum size) leaves its
    columns empty and says why in ``metric_notes``."""
    n = int(stacks[0].shape[0])
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, model in metrics.items():
        try:
            if kind == "pairs":
                vals = {name: model(stacks[0], stacks[1])}
            else:
                vals = {f"{name}{k}": model(stacks[0], stacks[k + 1]) for k in (0, 1)}
        except (LpipsExplainError, RuntimeError, ValueError) as exc:
            for rec in out:
                rec.update({c: None for c in _metric_keys(kind, name)})
                rec.setdefault("metric_notes", []).append(f"{name}: {exc}")
            continue
        for col, v in vals.items():
            flat = v.detach().reshape(n).to("cpu", torch.float64).tolist()
            for i in range(n):
                out[i][col] = flat[i]
    return out


def _metric_keys(kind: str, name: str) -> list[str]:
    return [name] if kind == "pairs" else [f"{name}0", f"{name}1"]


# --------------------------------------------------------------------------- records


def make_record(kind: str, row: AuditRow, decoded: Decoded, score: Mapping[str, Any] | None,
                layer_names: Sequence[str], signature: str,
                metrics: Sequence[str] = ()) -> dict[str, Any]:
    """What an engine computed for one row: the computed columns of
    :func:`~lpips_explain.audit.columns.columns` (the
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
        verdict = pick(margin) if margin is not None else None
        judge = row.judge
        human = pick(0.5 - judge) if ok and judge is not None else None
        agree = None
        if verdict is not None and human is not None and "tie" not in (verdict, human):
            agree = verdict == human
        rec.update(d0=d0, d1=d1, margin=margin, verdict=verdict, human=human, agree=agree,
                   score_2afc=float(two_afc(d0, d1, judge)) if human is not None else None)
        for key in ("psnr0", "psnr1", "ssim0", "ssim1"):
            rec[key] = score[key] if ok else None  # type: ignore[index]
        for k, n in enumerate(layer_names):
            rec[f"margin_{n}"] = float(t1[k] - t0[k]) if ok else None  # type: ignore[index]
    notes = [decoded.notes] if decoded.notes else []
    for name in metrics:
        for col in _metric_keys(kind, name):
            rec[col] = score.get(col) if ok else None  # type: ignore[union-attr]
    if ok:
        notes += score.get("metric_notes", [])  # type: ignore[union-attr]
    h, w = decoded.size
    rec.update(height=h if ok else None, width=w if ok else None,
               notes="; ".join(notes) or None)
    rec["signature"] = signature
    for k, r in enumerate(roles):
        rec[f"thumb_{r}"] = decoded.thumbs[k] if k < len(decoded.thumbs) else None
    return rec


