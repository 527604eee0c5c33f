"""The model registry: profiles (models/registry.yaml) that name the detector's and the agent's files.

`load_profile("tiny")` resolves every path against the repository root and checks the files before
anything loads them: a file that is missing, or that does not match the profile's sha256 manifest,
raises `ModelFileError` naming the file and the exact command that creates or downloads it. The
planner and the detector get paths from here, so real weights replace tiny ones by changing the
profile's name, never code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lookout.paths import models_dir, repo_root

MANIFEST_NAME = "MANIFEST.sha256"


class ModelFileError(FileNotFoundError):
    """A model file is missing or corrupt; the message says which file and how to get it."""


class RegistryError(ValueError):
    """registry.yaml is malformed or names a profile that does not exist."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectorEntry(_Entry):
    weights: str = Field(description="Ultralytics .pt file (YOLO-World for open vocabulary)")
    text_encoder: str = Field(description="offline (MiniLM), clip, or a full encoder id")
    provide: str = Field(description="the command that creates or downloads the weights")


class AgentEntry(_Entry):
    base: str = Field(description="folder with a Hugging Face Llama (save_pretrained) or a hub id")
    load_in_4bit: bool = True
    adapter: str | None = Field(None, description="PEFT LoRA adapter folder")
    adapter_required: bool = False
    provide: str = Field(description="the command that creates or downloads the base")
    provide_adapter: str | None = Field(None, description="the command that trains the adapter (default: provide)")


class ProfileEntry(_Entry):
    description: str = ""
    manifest: str | None = Field(None, description="sha256sum-style manifest checked on load")
    detector: DetectorEntry
    agent: AgentEntry


class Registry(_Entry):
    profiles: dict[str, ProfileEntry]


@dataclass(frozen=True)
class AgentFiles:
    base: str  # a local folder (absolute) or a Hugging Face hub id found in the local cache
    adapter: Path | None  # None when the profile has no adapter or an optional one is not built
    load_in_4bit: bool


@dataclass(frozen=True)
class DetectorFiles:
    weights: Path
    text_encoder: str


@dataclass(frozen=True)
class Profile:
    """A profile with its paths resolved (and checked, for the parts that were asked for)."""

    name: str
    description: str
    agent: AgentFiles | None
    detector: DetectorFiles | None


def default_registry_path() -> Path:
    return models_dir() / "registry.yaml"


def load_registry(path: str | Path | None = None) -> Registry:
    path = Path(path) if path else default_registry_path()
    if not path.is_file():
        raise RegistryError(f"model registry {path} not found (it ships with the repository: models/registry.yaml)")
    try:
        return Registry.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise RegistryError(f"model registry {path} is malformed: {exc}") from exc


def resolve(path: str, root: Path | None = None) -> Path:
    """A registry path: absolute or ~ as given, relative ones under the repository root."""
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else (root or repo_root()) / p


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ---- checksums ----------------------------------------------------------------------------------

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) so repeated loads do not re-read weights."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def read_manifest(path: Path) -> dict[str, str]:
    """`sha256sum` format ('<hex>  <path relative to the manifest's folder>') -> {relative path: hex}."""
    entries: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ModelFileError(f"{path}:{lineno} is not a sha256sum line: {line!r}")
        entries[parts[1].strip().lstrip("*")] = parts[0].lower()
    return entries


def write_manifest(folder: Path, exclude: tuple[str, ...] = (MANIFEST_NAME, "README.md")) -> Path:
    """Write folder/MANIFEST.sha256 over every file below it (sorted, so the file is reproducible)."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in exclude or "/." in f"/{rel}":
            continue
        lines.append(f"{sha256_file(path)}  {rel}")
    out = folder / MANIFEST_NAME
    out.write_text("\n".join(lines) + "\n")
    return out


def verify_against_manifest(target: Path, manifest: Path, provide: str, root: Path) -> None:
    """Check a file or folder against the manifest; raise ModelFileError naming the first bad file."""
    shown = _display(target, root)
    if not manifest.is_file():
        raise ModelFileError(f"checksum manifest {_display(manifest, root)} not found: run `{provide}`")
    if not target.exists():
        raise ModelFileError(f"model file {shown} not found: run `{provide}`")
    base = manifest.parent
    try:
        rel = target.relative_to(base).as_posix()
    except ValueError as exc:
        raise ModelFileError(f"{shown} is outside {_display(base, root)}, so the manifest cannot vouch for it") from exc
    entries = read_manifest(manifest)
    mine = {k: v for k, v in entries.items() if k == rel or k.startswith(rel + "/")}
    if not mine:
        raise ModelFileError(f"{shown} is not listed in {_display(manifest, root)}: rebuild with `{provide}`")
    for name, expected in sorted(mine.items()):
        path = base / name
        if not path.is_file():
            raise ModelFileError(f"model file {_display(path, root)} not found: run `{provide}`")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelFileError(
                f"model file {_display(path, root)} is corrupt or was changed (sha256 {actual[:12]}..., "
                f"manifest says {expected[:12]}...): rebuild with `{provide}` or restore it with "
                f"`git checkout -- {_display(path, root)}`"
            )


# ---- profiles -----------------------------------------------------------------------------------


def _hub_snapshot(repo_id: str) -> str | None:
    """The local snapshot folder of a cached Hugging Face model with weights, else None (never downloads)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not usable offline"
        return None
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return str(folder) if (folder / "config.json").is_file() and has_weights else None


def _check_plain(path: Path, provide: str, root: Path, what: str) -> None:
    if not path.exists():
        raise ModelFileError(f"{what} {_display(path, root)} not found: {provide_hint(provide)}")


def provide_hint(provide: str) -> str:
    return f"run `{provide}`" if "\n" not in provide and len(provide) < 60 else f"get it with: {provide}"


def _agent_files(entry: AgentEntry, manifest: Path | None, root: Path, verify: bool) -> AgentFiles:
    base_path = resolve(entry.base, root)
    base: str
    if base_path.exists() or manifest is not None or entry.base.startswith((".", "/", "~", "models/")):
        base = str(base_path)
        if verify:
            if manifest is not None:
                verify_against_manifest(base_path, manifest, entry.provide, root)
            else:
                _check_plain(base_path, entry.provide, root, "agent base model")
    else:  # a hub id: usable only if already in the local Hugging Face cache
        snapshot = _hub_snapshot(entry.base)
        if snapshot is None and verify:
            raise ModelFileError(
                f"agent base model {entry.base} is neither a folder under {root} nor in the local Hugging Face "
                f"cache: {provide_hint(entry.provide)}"
            )
        base = snapshot or entry.base
    adapter: Path | None = None
    if entry.adapter:
        adapter_path = resolve(entry.adapter, root)
        provide = entry.provide_adapter or entry.provide
        listed = manifest is not None and manifest.is_file() and any(
            k == _rel(adapter_path, manifest.parent) or k.startswith(_rel(adapter_path, manifest.parent) + "/")
            for k in read_manifest(manifest))
        if adapter_path.exists() or listed or entry.adapter_required:
            if verify:
                if manifest is not None and (listed or entry.adapter_required):
                    verify_against_manifest(adapter_path, manifest, provide, root)
                else:
                    _check_plain(adapter_path, provide, root, "agent adapter")
            adapter = adapter_path
    return AgentFiles(base, adapter, entry.load_in_4bit)


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _detector_files(entry: DetectorEntry, manifest: Path | None, root: Path, verify: bool) -> DetectorFiles:
    weights = resolve(entry.weights, root)
    if verify:
        if manifest is not None:
            verify_against_manifest(weights, manifest, entry.provide, root)
        else:
            _check_plain(weights, entry.provide, root, "detector weights")
    return DetectorFiles(weights, entry.text_encoder)


def load_profile(name: str = "tiny", parts: tuple[str, ...] = ("agent", "detector"), verify: bool = True,
                 registry: str | Path | None = None, root: str | Path | None = None) -> Profile:
    """Resolve a profile; with verify, check the files of `parts` (missing or corrupt -> ModelFileError)."""
    reg = load_registry(registry)
    if name not in reg.profiles:
        raise RegistryError(f"unknown model profile {name!r}; the registry has: {', '.join(sorted(reg.profiles))}")
    entry = reg.profiles[name]
    root_path = Path(root) if root else repo_root()
    manifest = resolve(entry.manifest, root_path) if entry.manifest else None
    unknown = set(parts) - {"agent", "detector"}
    if unknown:
        raise ValueError(f"unknown profile parts {sorted(unknown)}: use 'agent' and/or 'detector'")
    agent = _agent_files(entry.agent, manifest, root_path, verify) if "agent" in parts else None
    detector = _detector_files(entry.detector, manifest, root_path, verify) if "detector" in parts else None
    return Profile(name, entry.description, agent, detector)
