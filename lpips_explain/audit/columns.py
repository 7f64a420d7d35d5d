"""What audit.parquet holds: its columns, in order, the roles of a row's images and the
values of its pick columns.

Types are string, float64, int64 and bool; the engines' parts add ``signature`` and the
thumbnails (``thumb_<role>``, binary) and leave out the input's own columns, which are put
back from the input when the parts are assembled.
"""

from __future__ import annotations

from collections.abc import Sequence

SCHEMA = "lpips-explain/audit/1"
#: The images of a row, by kind: a pair's A and B, a triplet's reference and candidates.
ROLES: dict[str, tuple[str, ...]] = {"pairs": ("a", "b"), "triplets": ("ref", "p0", "p1")}
#: The optional metric columns (``--metrics``): second-opinion distances, 0 = identical.
METRIC_COLUMNS: tuple[str, ...] = ("stlpips", "dists")


def metric_columns(kind: str, metrics: Sequence[str]) -> list[tuple[str, str]]:
    """The columns of the optional metrics: pairs ``<metric>`` (its distance of a to b),
    triplets ``<metric>0`` and ``<metric>1`` (ref to p0, ref to p1)."""
    if kind == "pairs":
        return [(m, "float64") for m in metrics]
    return [(f"{m}{k}", "float64") for m in metrics for k in (0, 1)]


def columns(kind: str, layer_names: Sequence[str],
            extra: Sequence[str] = (), metrics: Sequence[str] = ()) -> list[tuple[str, str]]:
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
    cols += metric_columns(kind, metrics)
    cols += [("height", "int64"), ("width", "int64"), ("notes", "string")]
    cols += [(name, "string") for name in extra]
    return cols


def input_columns(kind: str) -> list[str]:
    """The columns audit.parquet takes from the input itself (besides id and the extras)."""
    return [*ROLES[kind], *(["judge"] if kind == "triplets" else [])]


def internal_columns(kind: str) -> list[tuple[str, str]]:
    """Columns the engines' parts carry beyond audit.parquet's."""
    return [("signature", "string"), *[(f"thumb_{r}", "binary") for r in ROLES[kind]]]


def part_columns(kind: str, layer_names: Sequence[str],
                 metrics: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The columns an engine writes to its parts: what
    :func:`~lpips_explain.audit.rows.make_record` returns."""
    skip = set(input_columns(kind))
    return ([c for c in columns(kind, layer_names, (), metrics) if c[0] not in skip]
            + internal_columns(kind))


def pick(margin: float) -> str:
    """The candidate a margin favours: ``p0`` if positive, ``p1`` if negative, else ``tie``.
    LPIPS's ``verdict`` is ``pick(d1 - d0)``, the judges' ``human`` is ``pick(0.5 - judge)``."""
    return "p0" if margin > 0 else "p1" if margin < 0 else "tie"
