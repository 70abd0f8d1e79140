"""Per-family model environments: one virtualenv per group of packages that cannot share one.

Some model families pin incompatible versions of the same package (``mace-torch`` pins
``e3nn==0.4.4``, ``fairchem-core`` 2.x installs ``e3nn`` 0.6, and a MACE ``.model`` pickle loads
only under the e3nn that saved it). Each family therefore gets its own virtualenv holding
``torch``, the family's pinned packages, matteralign's own runtime dependencies and matteralign
itself (editable, ``--no-deps``). This module builds and describes them; where a model runs is
decided by :mod:`matteralign.execute.placement`, whose executors start their workers
(:mod:`matteralign.execute.worker`) in the environment's Python.

Every environment installs ``torch==2.13.0`` (the CPU wheel on disk) first, with a constraints
file that keeps every later install on it. That includes ``eqv2`` (EquiformerV2, which exists only
in fairchem-core 1.x): fairchem-core 1.10 declares ``torch~=2.4.0`` (from PyPI, a CUDA build with 11
``nvidia-*-cu12`` wheels and triton 3.0, several GB) and ``numpy<2``. It is installed ``--no-deps`` on
torch 2.13.0 with ``numpy<2`` and the runtime packages it really imports (its declared dependencies
minus hydra-core and torchtnt, plus matplotlib, which it imports without declaring), and
``torch-scatter`` compiled once against torch 2.13.0. Under torch 2.13.0 the package's trainer
builds both EquiformerV2 layouts (OC20's ``equiformer_v2`` and the OMat24/MPtrj ``hydra`` backbone
with heads), saves and reloads them through its own ``OCPCalculator``, and runs them forward on
molecules and crystals (``tests/envs/test_families.py``).
The one exception is ``aurora`` (the Aurora weather model):
``microsoft-aurora`` imports timm, which imports torchvision at import time, and PyPI's torchvision
does not load beside the torch 2.13.0 CPU wheel (``operator torchvision::nms does not exist``: its
extension links CUDA libraries that CPU build lacks). That environment installs the matching pair
torch 2.14.1 + torchvision 0.29.1 that lies on disk instead (a CUDA build of about 5.5 GB, run on
the CPU), rather than stubbing torchvision out.
Two protein families share the import name ``esm``: fair-esm (ESM-IF1) sits in ``eqv2``, beside the
torch-geometric and compiled torch-scatter its inverse-folding encoder imports; EvolutionaryScale's ``esm``
(ESM3) has the ``esm3`` environment, installed ``--no-deps`` (its release for Python 3.11 declares torchtext and
torchvision, which its model code never imports). PET-MAD has the ``pet`` environment (upet, metatrain,
metatomic-torch).

Environments live in a per-user cache directory (``$MATTERALIGN_ENV_DIR``, else
``$XDG_CACHE_HOME/matteralign/envs``, else ``~/.cache/matteralign/envs``) under
``<family>-<key>``, where ``key`` hashes the pinned requirements, the torch version and the
Python version (as pre-commit and nox do): each is built once per machine and reused by later
runs and by CI on the same machine. A build happens in a temporary folder that is renamed at the
end, under a file lock, so a half-built environment is never used.

>>> from matteralign import envs
>>> envs.create("mace")                                      # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelError, UnknownNameError

__all__ = [
    "EnvSpec",
    "FAMILIES",
    "BASE_REQUIREMENTS",
    "env_root",
    "env_path",
    "env_key",
    "wheel_cache",
    "exists",
    "create",
    "list_envs",
    "python_of",
    "current_family",
    "run_in_env",
]

#: matteralign's own runtime dependencies needed by the worker (store, samples, adapters' helpers).
BASE_REQUIREMENTS = ("numpy", "scipy", "zarr>=3.0", "pydantic>=2.6", "rich>=13", "typer>=0.12", "ase>=3.23")

#: The file each environment carries with what it holds.
MANIFEST = "matteralign-env.json"

_KEY_PACKAGES = ("torch", "torchvision", "numpy", "e3nn", "ase", "fairchem-core", "mace-torch", "orb-models", "mattergen",
                 "microsoft-aurora", "torch-scatter", "torch-geometric", "zarr", "esm", "fair-esm", "upet", "metatrain",
                 "metatomic-torch", "transformers")


@dataclass(frozen=True)
class EnvSpec:
    """One model environment: what it installs and why it exists.

    Attributes
    ----------
    family : str
        Environment name (``matteralign env create FAMILY``).
    requirements : tuple of str
        Pinned family packages, installed after torch with the torch pin as a constraint.
    torch : str
        The torch version installed first (the CPU wheel on disk for 2.13.0).
    description : str
    unavailable : str, optional
        Why this environment is not built here (``None`` when it can be).
    source_builds : tuple of str
        Pinned packages that PyPI publishes only as source distributions with compiled extensions
        (``torch-scatter``): each is compiled once against the environment's torch into the per-user
        wheel cache (:func:`wheel_cache`) and installed from there by every later build.
    no_deps : tuple of str
        Pinned packages installed with ``--no-deps`` after the others, because their declared pins
        cannot resolve here; what they really need is listed in ``requirements``.
    """

    family: str
    requirements: tuple[str, ...]
    torch: str = "2.13.0"
    description: str = ""
    unavailable: str | None = None
    source_builds: tuple[str, ...] = ()
    no_deps: tuple[str, ...] = ()


FAMILIES: dict[str, EnvSpec] = {
    "fairchem": EnvSpec("fairchem", ("fairchem-core==2.24.0",),
                        description="fairchem-core 2.x: UMA and eSEN (e3nn 0.6)"),
    "mace": EnvSpec("mace", ("mace-torch==0.3.16", "e3nn==0.4.4"),
                    description="MACE-MP / MACE-OFF / MACE-OMAT (e3nn 0.4.4, pinned by mace-torch)"),
    "orb": EnvSpec("orb", ("orb-models==0.5.5",),
                   description="Orb v2 / v3 (orb-models 0.5.5: the newest release for Python 3.11)"),
    "mattergen": EnvSpec("mattergen", ("numpy<2", "hydra-core==1.3.1", "omegaconf==2.3.0", "pytorch-lightning==2.0.6",
                                       "torch-geometric==2.8.1", "pymatgen==2024.10.29", "emmet-core==0.84.2",
                                       "ase", "tqdm", "pandas", "huggingface_hub", "setuptools<81"),
                         source_builds=("torch-scatter==2.1.2",), no_deps=("mattergen==1.0.3",),
                         description=("MatterGen 1.0.3 (installed --no-deps: its metadata pins torch==2.2.1+cu118, "
                                      "which exists only on the PyTorch index; the packages its denoiser and "
                                      "checkpoint loader import are listed instead). torch-scatter is compiled once; "
                                      "torch-sparse is replaced by matteralign's pure-torch stand-in of the one "
                                      "operation GemNet-T uses")),
    "aurora": EnvSpec("aurora", ("torchvision==0.29.1", "microsoft-aurora==2.0.1"), torch="2.14.1",
                      description=("Aurora weather foundation model (microsoft-aurora 2.0.1) on torch 2.14.1 + "
                                   "torchvision 0.29.1: aurora imports timm, which imports torchvision at import "
                                   "time, and PyPI's torchvision does not load beside the torch 2.13.0 CPU wheel "
                                   "('operator torchvision::nms does not exist'); 2.14.1/0.29.1 are a matching "
                                   "pair (a CUDA build, about 5.5 GB, that runs on the CPU)")),
    "eqv2": EnvSpec("eqv2", ("numpy<2", "e3nn==0.6.0", "torch-geometric==2.8.1", "ase", "lmdb", "numba", "orjson",
                             "pydantic>=2.10.0", "pymatgen>=2023.10.3", "pyyaml", "requests", "submitit", "tensorboard",
                             "tqdm", "wandb", "huggingface-hub>=0.27.1", "matplotlib", "fair-esm==2.0.0",
                             "biotite<1"),
                    source_builds=("torch-scatter==2.1.2",), no_deps=("fairchem-core==1.10.0",),
                    description=("EquiformerV2 (only in fairchem-core 1.x): fairchem-core 1.10.0 installed --no-deps "
                                 "on torch 2.13.0 (it declares torch~=2.4.0, PyPI's multi-GB CUDA build), numpy<2, "
                                 "the packages it imports, torch-scatter compiled once. Also ESM-IF1 (fair-esm 2.0.0, "
                                 "whose inverse-folding encoder needs torch-geometric and torch-scatter; its loader "
                                 "imports biotite.structure.filter_backbone, removed in biotite 1.0)")),
    "esm3": EnvSpec("esm3", ("transformers<4.48.2", "tokenizers", "einops", "biotite>=1.0.0", "msgpack-numpy", "brotli",
                             "attrs", "cloudpathlib", "tenacity", "zstd", "pandas", "scikit-learn", "biopython",
                             "huggingface-hub", "httpx"),
                    no_deps=("esm==3.2.1.post1",),
                    description=("ESM3 and ESM C (EvolutionaryScale's esm, whose import name clashes with fair-esm's). "
                                 "esm 3.4.1 requires Python>=3.12 and torch<2.12; 3.2.1.post1, the newest release for "
                                 "Python 3.11, is installed --no-deps because it declares torchtext (whose releases pin "
                                 "torch<=2.3) and torchvision (PyPI's build does not load beside the torch 2.13.0 CPU "
                                 "wheel), neither of which its model code imports; the packages it imports are listed (httpx, "
                                 "which it imports without declaring, included)")),
    "pet": EnvSpec("pet", ("upet==0.3.1",),
                   description=("PET-MAD through upet 0.3.1 (metatrain 2026.4, metatomic-torch 0.1, metatensor-torch "
                                "0.10, which accepts torch<2.15); pet-mad 1.4.4 pins metatrain==2025.12, whose "
                                "metatensor-torch 0.8.x requires torch<2.12")),
}


# ---------------------------------------------------------------------- locations and keys
def env_root() -> Path:
    """The folder holding every environment (``$MATTERALIGN_ENV_DIR`` or the per-user cache)."""
    root = os.environ.get("MATTERALIGN_ENV_DIR")
    if root:
        return Path(root).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "matteralign" / "envs"


def get_env_spec(family: str) -> EnvSpec:
    """The :class:`EnvSpec` of ``family`` (:class:`UnknownNameError` otherwise)."""
    if family not in FAMILIES:
        raise UnknownNameError("model environment", str(family), FAMILIES)
    return FAMILIES[family]


def env_key(family: str) -> str:
    """Twelve hex digits identifying the requirements, torch and Python version of ``family``.

    .. math:: \\mathrm{key} = \\mathrm{sha256}(\\mathrm{json}(\\text{family, torch, requirements, base, python}))_{:12}
    """
    spec = get_env_spec(family)
    blob = {"family": spec.family, "torch": spec.torch, "requirements": list(spec.requirements),
            "base": list(BASE_REQUIREMENTS), "python": platform.python_version(), "machine": platform.machine()}
    if spec.source_builds or spec.no_deps:  # keys of environments without them stay as they were
        blob.update(source_builds=list(spec.source_builds), no_deps=list(spec.no_deps))
    blob = json.dumps(blob, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def env_path(family: str) -> Path:
    """Where the environment of ``family`` lives (whether or not it exists)."""
    return env_root() / f"{family}-{env_key(family)}"


def wheel_cache(torch_version: str) -> Path:
    """The per-user folder of wheels compiled from source against ``torch_version``.

    ``<env_root>/../wheels/torch-<version>-py<X.Y>-<machine>``: a compiled extension is tied to the
    torch, Python and machine it was built with, so each combination has its own folder.
    """
    py = ".".join(platform.python_version_tuple()[:2])
    return env_root().parent / "wheels" / f"torch-{torch_version}-py{py}-{platform.machine()}"


def _req_name(req: str) -> str:
    import re

    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower().replace("-", "_")


def _build_wheels(py: Path, spec: EnvSpec, logf, say: Callable[[str], None]) -> Path:
    """Compile ``spec.source_builds`` into :func:`wheel_cache` (once; later builds reuse the wheels)."""
    import fcntl

    cache = wheel_cache(spec.torch)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        for req in spec.source_builds:
            name = _req_name(req)
            version = req.split("==", 1)[1].strip() if "==" in req else None
            have = [w for w in cache.glob(f"{name}-*.whl")
                    if version is None or w.name.split("-")[1].split("+")[0] == version]
            if have:
                say(f"{spec.family}: {req} from the wheel cache ({have[0].name})")
                continue
            say(f"{spec.family}: compiling {req} against torch {spec.torch} (once per machine; minutes)")
            env = dict(os.environ, MAX_JOBS=os.environ.get("MAX_JOBS", str(os.cpu_count() or 1)))
            _run([py, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-build-isolation", "--no-deps",
                  "-w", cache, req], logf, env=env)
    return cache


def python_of(family: str) -> Path:
    """The Python interpreter of ``family``'s environment."""
    return env_path(family) / "bin" / "python"


def exists(family: str) -> bool:
    """Whether the environment of ``family`` is built (complete: its manifest is there)."""
    p = env_path(family)
    return (p / MANIFEST).is_file() and (p / "bin" / "python").exists()


def current_family() -> str | None:
    """The family of the environment this Python runs in (``None`` for the main environment)."""
    return os.environ.get("MATTERALIGN_ENV") or None


# ---------------------------------------------------------------------- building
def _project_root() -> Path:
    """The source checkout of matteralign (holding pyproject.toml)."""
    here = Path(__file__).resolve().parent  # .../src/matteralign
    root = here.parents[1]
    if not (root / "pyproject.toml").is_file():
        raise ConfigError(f"model environments install matteralign from its source checkout; none found above {here}")
    return root


def _run(cmd: Sequence[str], log, *, env: dict[str, str] | None = None) -> None:
    log.write(f"$ {' '.join(map(str, cmd))}\n")
    log.flush()
    proc = subprocess.run([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise ConfigError(f"command failed with exit code {proc.returncode}: {' '.join(map(str, cmd))} "
                          f"(see the log {log.name})")


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size
    return total


def _fix_scripts(bindir: Path, old: str, new: str) -> None:
    """Point the scripts of a renamed venv (shebangs, activate) at the final path."""
    for f in bindir.iterdir():
        if f.is_symlink() or not f.is_file():
            continue
        try:
            data = f.read_bytes()
        except OSError:
            continue
        if old.encode() in data[:100_000] and b"\0" not in data[:1024]:
            f.write_bytes(data.replace(old.encode(), new.encode()))


def create(family: str, *, force: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Build the environment of ``family`` (no-op when it exists) and return its path.

    Steps, in a temporary folder next to the final one: ``python -m venv``; ``pip install
    torch==<version>`` with a constraints file pinning it; the family's pinned requirements and
    :data:`BASE_REQUIREMENTS` under the same constraint; ``pip install --no-deps -e <checkout>``;
    a manifest (requirements, ``pip freeze`` digest, key versions, build time). The folder is then
    renamed to ``<family>-<key>``. A file lock serialises concurrent builds of one environment.

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`.
    force : bool
        Rebuild even if the environment exists.
    log : callable, optional
        Called with one line per step.

    Returns
    -------
    Path
        The environment folder.

    Raises
    ------
    ConfigError
        The environment cannot be built here (reason given) or a step failed (the log is kept).
    """
    import fcntl

    spec = get_env_spec(family)
    if spec.unavailable:
        raise ConfigError(f"model environment {family!r} is not built here: {spec.unavailable}")
    say = log or (lambda s: None)
    final = env_path(family)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{final.name}.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if exists(family) and not force:
            say(f"{family}: exists at {final}")
            return final
        tmp = root / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        logpath = root / f"{final.name}.build.log"
        t0 = time.perf_counter()
        with open(logpath, "w") as logf:
            try:
                say(f"{family}: creating {final} (log: {logpath})")
                _run([sys.executable, "-m", "venv", tmp], logf)
                py = tmp / "bin" / "python"
                pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
                with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as cf:
                    cf.write(f"torch=={spec.torch}\nsetuptools<81\n")
                    constraints = cf.name
                try:
                    say(f"{family}: torch=={spec.torch}")
                    _run([*pip, "-c", constraints, f"torch=={spec.torch}"], logf)
                    find_links: list[Any] = []
                    if spec.source_builds:
                        _run([*pip, "-c", constraints, "setuptools", "wheel"], logf)
                        find_links = ["--find-links", _build_wheels(py, spec, logf, say)]
                    say(f"{family}: {' '.join(spec.requirements + spec.source_builds)}")
                    _run([*pip, "-c", constraints, *find_links, *spec.requirements, *spec.source_builds,
                          *BASE_REQUIREMENTS], logf)
                    if spec.no_deps:
                        say(f"{family}: {' '.join(spec.no_deps)} (--no-deps)")
                        _run([*pip, "-c", constraints, "--no-deps", *spec.no_deps], logf)
                    say(f"{family}: matteralign (editable, --no-deps)")
                    _run([*pip, "--no-deps", "-e", _project_root()], logf)
                finally:
                    os.unlink(constraints)
                freeze = subprocess.run([str(py), "-m", "pip", "freeze", "--exclude-editable"],
                                        capture_output=True, text=True, check=True).stdout
                versions = _versions_in(py)
                manifest = {
                    "family": family, "key": env_key(family), "torch": spec.torch,
                    "requirements": list(spec.requirements), "base_requirements": list(BASE_REQUIREMENTS),
                    "source_builds": list(spec.source_builds), "no_deps": list(spec.no_deps),
                    "python": platform.python_version(), "freeze_sha256": hashlib.sha256(freeze.encode()).hexdigest(),
                    "n_packages": len([x for x in freeze.splitlines() if x.strip()]), "versions": versions,
                    "build_seconds": round(time.perf_counter() - t0, 1),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (tmp / "pip-freeze.txt").write_text(freeze)
                _fix_scripts(tmp / "bin", str(tmp), str(final))
                if final.exists():
                    shutil.rmtree(final)
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        say(f"{family}: done in {time.perf_counter() - t0:.0f} s")
        return final


def _versions_in(py: Path) -> dict[str, str | None]:
    code = ("import json,importlib.metadata as m\n"
            "def v(d):\n    try:\n        return m.version(d)\n    except m.PackageNotFoundError:\n        return None\n"
            f"print(json.dumps({{d: v(d) for d in {list(_KEY_PACKAGES)!r}}}))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout
    return {k: v for k, v in json.loads(out).items() if v is not None}


def list_envs(*, sizes: bool = True) -> list[dict[str, Any]]:
    """Every known family and every environment folder found in :func:`env_root`.

    Returns
    -------
    list of dict
        Keys ``family``, ``path``, ``exists``, ``current`` (its key matches today's requirements),
        ``size_bytes`` (None when not built or ``sizes=False``), ``versions``, ``freeze_sha256``,
        ``build_seconds``, ``created``, ``reason`` (why it cannot be built, or None).
    """
    rows = []
    seen = set()
    root = env_root()
    for family, spec in FAMILIES.items():
        p = env_path(family)
        seen.add(p.name)
        rows.append(_row(family, p, current=True, reason=spec.unavailable, sizes=sizes))
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.name.startswith(".") or p.name in seen or not (p / MANIFEST).is_file():
                continue
            fam = p.name.rsplit("-", 1)[0]
            rows.append(_row(fam, p, current=False, reason=None, sizes=sizes))
    return rows


def _row(family: str, p: Path, *, current: bool, reason: str | None, sizes: bool) -> dict[str, Any]:
    man = {}
    if (p / MANIFEST).is_file():
        try:
            man = json.loads((p / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            man = {}
    built = bool(man)
    return {
        "family": family, "path": str(p), "exists": built, "current": current,
        "size_bytes": _du(p) if (built and sizes) else None,
        "versions": man.get("versions", {}), "freeze_sha256": man.get("freeze_sha256"),
        "build_seconds": man.get("build_seconds"), "created": man.get("created"), "reason": reason,
    }


# ---------------------------------------------------------------------- running in an environment
def _check_env(family: str, model: str) -> Path:
    spec = get_env_spec(family)
    if spec.unavailable:
        raise ModelError(f"model {model!r} needs the {family!r} environment, which is not built here: {spec.unavailable}")
    if not exists(family):
        raise ModelError(f"model {model!r} runs in the {family!r} model environment, which does not exist "
                         f"(looked in {env_path(family)}). Create it with `matteralign env create {family}`.")
    return python_of(family)


def _child_env(family: str, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["MATTERALIGN_ENV"] = family
    src = str(Path(__file__).resolve().parents[1])  # the checkout the caller runs: the child runs the same code
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONHOME", None)
    env.pop("VIRTUAL_ENV", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_in_env(family: str, args: Sequence[str], *, check: bool = True, timeout: float | None = None,
               capture: bool = True) -> subprocess.CompletedProcess:
    """Run ``<env>/bin/python ARGS`` in the environment of ``family`` (the current checkout on its path).

    Parameters
    ----------
    family : str
    args : sequence of str
        Arguments after the interpreter (``["-m", "matteralign.execute.worker"]`` or a script).
    check : bool
        Raise :class:`ModelError` with the tail of stderr on a non-zero exit.
    timeout : float, optional
    capture : bool
        Capture stdout/stderr as text (otherwise inherited).

    Returns
    -------
    subprocess.CompletedProcess
    """
    py = _check_env(family, f"<{family}>")
    proc = subprocess.run([str(py), *map(str, args)], env=_child_env(family), capture_output=capture, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        tail = (proc.stderr or "")[-3000:] if capture else ""
        raise ModelError(f"command in the {family!r} environment failed (exit {proc.returncode}): {tail}")
    return proc
