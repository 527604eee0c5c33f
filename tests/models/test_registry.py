"""The model registry: profiles resolve under the repo, and missing or corrupt files say how to get them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lookout.models.registry import (
    MANIFEST_NAME,
    ModelFileError,
    RegistryError,
    load_profile,
    load_registry,
    read_manifest,
    write_manifest,
)
from lookout.paths import repo_root

REGISTRY = yaml.safe_load((repo_root() / "models" / "registry.yaml").read_text())


@pytest.fixture()
def fake_repo(tmp_path: Path) -> Path:
    """A repository root with the real registry and a small 'tiny' profile's files and manifest."""
    (tmp_path / "models").mkdir()
    shutil.copy(repo_root() / "models" / "registry.yaml", tmp_path / "models" / "registry.yaml")
    tiny = tmp_path / "models" / "tiny"
    (tiny / "agent-base").mkdir(parents=True)
    (tiny / "agent-base" / "config.json").write_text('{"model_type": "llama"}')
    (tiny / "agent-base" / "model.safetensors").write_bytes(b"\x00weights" * 100)
    (tiny / "detector.pt").write_bytes(b"detector" * 50)
    write_manifest(tiny)
    return tmp_path


def _load(root: Path, name: str = "tiny", **kw):
    return load_profile(name, registry=root / "models" / "registry.yaml", root=root, **kw)


def test_registry_names_real_and_tiny_profiles() -> None:
    reg = load_registry()
    assert {"real", "tiny"} <= set(reg.profiles)
    real = reg.profiles["real"]
    assert real.detector.weights.endswith("yolov8s-worldv2.pt") and real.detector.text_encoder == "clip"
    assert real.agent.base.startswith("meta-llama/Llama-3.2-") and real.agent.load_in_4bit and real.agent.adapter
    tiny = reg.profiles["tiny"]
    assert tiny.agent.base.startswith("models/tiny/") and tiny.detector.weights.startswith("models/tiny/")
    assert tiny.manifest == "models/tiny/MANIFEST.sha256"


def test_tiny_profile_resolves_paths_under_the_repo(fake_repo: Path) -> None:
    profile = _load(fake_repo)
    assert profile.agent is not None and profile.detector is not None
    assert Path(profile.agent.base) == fake_repo / "models" / "tiny" / "agent-base"
    assert profile.agent.adapter is None, "an optional adapter that was never built is not an error"
    assert profile.detector.weights == fake_repo / "models" / "tiny" / "detector.pt"
    assert profile.detector.text_encoder == "offline"


def test_missing_file_names_it_and_the_command_that_builds_it(fake_repo: Path) -> None:
    (fake_repo / "models" / "tiny" / "agent-base" / "model.safetensors").unlink()
    with pytest.raises(ModelFileError) as err:
        _load(fake_repo, parts=("agent",))
    message = str(err.value)
    assert "models/tiny/agent-base/model.safetensors not found" in message
    assert "`lookout models build tiny`" in message
    # the detector alone still loads: a profile is checked part by part
    assert _load(fake_repo, parts=("detector",)).detector is not None


def test_missing_folder_names_the_folder(fake_repo: Path) -> None:
    shutil.rmtree(fake_repo / "models" / "tiny" / "agent-base")
    with pytest.raises(ModelFileError, match=r"models/tiny/agent-base not found: run `lookout models build tiny`"):
        _load(fake_repo, parts=("agent",))


def test_corrupt_file_is_refused_with_rebuild_and_restore_advice(fake_repo: Path) -> None:
    weights = fake_repo / "models" / "tiny" / "detector.pt"
    weights.write_bytes(weights.read_bytes()[:-1] + b"X")
    with pytest.raises(ModelFileError) as err:
        _load(fake_repo, parts=("detector",))
    message = str(err.value)
    assert "models/tiny/detector.pt is corrupt" in message and "git checkout -- models/tiny/detector.pt" in message


def test_a_file_missing_from_the_manifest_is_refused(fake_repo: Path) -> None:
    manifest = fake_repo / "models" / "tiny" / MANIFEST_NAME
    lines = [x for x in manifest.read_text().splitlines() if "detector.pt" not in x]
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelFileError, match="not listed in models/tiny/MANIFEST.sha256"):
        _load(fake_repo, parts=("detector",))


def test_missing_manifest_is_an_error(fake_repo: Path) -> None:
    (fake_repo / "models" / "tiny" / MANIFEST_NAME).unlink()
    with pytest.raises(ModelFileError, match="MANIFEST.sha256 not found"):
        _load(fake_repo)


def test_built_adapter_is_verified_too(fake_repo: Path) -> None:
    adapter = fake_repo / "models" / "tiny" / "agent-adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"lora" * 10)
    (adapter / "adapter_config.json").write_text("{}")
    write_manifest(fake_repo / "models" / "tiny")
    assert _load(fake_repo, parts=("agent",)).agent.adapter == adapter  # type: ignore[union-attr]
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    with pytest.raises(ModelFileError, match="agent-adapter/adapter_config.json is corrupt"):
        _load(fake_repo, parts=("agent",))


def test_real_profile_without_downloads_says_how_to_download(fake_repo: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(fake_repo / "empty-hf-cache"))
    with pytest.raises(ModelFileError) as err:
        _load(fake_repo, "real", parts=("detector",))
    assert "models/real/yolov8s-worldv2.pt not found" in str(err.value)
    assert "ultralytics/assets/releases" in str(err.value)
    with pytest.raises(ModelFileError) as err:
        _load(fake_repo, "real", parts=("agent",))
    assert "meta-llama/Llama-3.2-1B-Instruct" in str(err.value) and "hf download" in str(err.value)
    # without verification the profile still resolves (e.g. to print it)
    profile = _load(fake_repo, "real", verify=False)
    assert profile.agent is not None and profile.agent.base == "meta-llama/Llama-3.2-1B-Instruct"


def test_real_profile_accepts_a_local_base_folder(fake_repo: Path) -> None:
    reg = yaml.safe_load((fake_repo / "models" / "registry.yaml").read_text())
    local = fake_repo / "weights" / "llama"
    local.mkdir(parents=True)
    reg["profiles"]["real"]["agent"]["base"] = str(local)
    adapter = fake_repo / "models" / "real" / "agent-adapter"
    adapter.mkdir(parents=True)
    (fake_repo / "models" / "registry.yaml").write_text(yaml.safe_dump(reg))
    agent = _load(fake_repo, "real", parts=("agent",)).agent
    assert agent is not None and agent.base == str(local) and agent.adapter == adapter


def test_unknown_profile_and_bad_registry_are_clear(fake_repo: Path) -> None:
    with pytest.raises(RegistryError, match="unknown model profile 'huge'.*real, tiny"):
        _load(fake_repo, "huge")
    (fake_repo / "models" / "registry.yaml").write_text("profiles:\n  tiny: {detector: 3}\n")
    with pytest.raises(RegistryError, match="malformed"):
        _load(fake_repo)


def test_manifest_is_sha256sum_compatible(fake_repo: Path) -> None:
    import hashlib

    manifest = fake_repo / "models" / "tiny" / MANIFEST_NAME
    entries = read_manifest(manifest)
    assert set(entries) == {"agent-base/config.json", "agent-base/model.safetensors", "detector.pt"}
    for rel, digest in entries.items():
        assert hashlib.sha256((manifest.parent / rel).read_bytes()).hexdigest() == digest
    assert all("  " in line for line in manifest.read_text().splitlines())
