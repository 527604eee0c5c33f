"""The tiny agent: tokenizer, the prefix-shared training loss, the build, and the committed model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lookout.agent.chat_template import LLAMA3_SPECIAL_TOKENS
from lookout.models.registry import load_profile, read_manifest
from lookout.models.tiny_agent import (
    TinyAgentConfig,
    collate,
    encode_rows,
    full_sequence_loss,
    prefix_shared_loss,
    train_tiny_agent,
)
from lookout.models.tiny_build import SIZE_LIMIT_BYTES, build_tiny, folder_bytes, tiny_dir
from lookout.models.tiny_tokenizer import conversation_texts, train_tokenizer
from lookout.train.data_gen import generate_dataset, load_rows


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread, and CI runs two test workers on two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("tiny-data")
    info = generate_dataset(out, seed=11, sizes={"train": 300, "val": 20, "test": 40}, show_progress=False)
    return {s: load_rows(p) for s, p in info.files.items()}


@pytest.fixture(scope="session")
def tokenizer(small_data):
    return train_tokenizer(conversation_texts(small_data["train"]), vocab_size=1024)


def test_tokenizer_has_llama3_special_tokens_and_chat_template(tokenizer, small_data) -> None:
    for token in LLAMA3_SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, f"{token} must be one token"
    row = small_data["train"][0]
    ids = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=False)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    text = tokenizer.decode(ids)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    assert text.endswith(row["messages"][-1]["content"] + "<|eot_id|>")
    assert tokenizer.eos_token == "<|eot_id|>" and tokenizer.pad_token not in LLAMA3_SPECIAL_TOKENS


def test_tokenizer_encodes_any_text_byte_exactly(tokenizer) -> None:
    for text in ["Finde den roten Ball, bitte!", "ça va? 止まれ 🤖", "move 1234567 m", "tab\there"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
    digits = tokenizer.convert_ids_to_tokens(tokenizer.encode("1234567", add_special_tokens=False))
    assert all(len(t) <= 3 for t in digits), "digits are split in groups of at most three, as in Llama 3"


def test_labels_cover_exactly_the_assistant_turns(tokenizer, small_data) -> None:
    rows = [r for r in small_data["train"] if r["meta"]["turns"] >= 2][:3]
    data = encode_rows(tokenizer, rows)
    for row, rest, labels in zip(rows, data.rest, data.labels, strict=True):
        labelled = tokenizer.decode([t for t, lab in zip(rest, labels, strict=True) if lab != -100])
        expected = "".join(m["content"] + "<|eot_id|>" for m in row["messages"] if m["role"] == "assistant")
        assert labelled == expected


def test_prefix_shared_loss_equals_the_full_sequence_loss(tokenizer, small_data) -> None:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = TinyAgentConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    model = LlamaForCausalLM(cfg.llama_config(tokenizer))
    data = encode_rows(tokenizer, small_data["train"][:6])
    ids, labels = collate(data, list(range(6)), tokenizer.pad_token_id)
    prefix = torch.tensor(data.prefix).unsqueeze(0)
    shared = prefix_shared_loss(model, prefix, ids, labels)
    shared.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full = full_sequence_loss(model, prefix, ids, labels)
    full.backward()
    assert torch.allclose(shared, full, rtol=1e-5, atol=1e-6)
    for g1, p in zip(grads, model.parameters(), strict=True):
        assert torch.allclose(g1, p.grad, rtol=1e-4, atol=1e-6)


def test_training_from_scratch_learns(tokenizer, small_data) -> None:
    cfg = TinyAgentConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, steps=40, batch_size=16,
                          warmup_steps=5, threads=1)
    model, stats = train_tiny_agent(small_data["train"], tokenizer, cfg, show_progress=False)
    first = sum(stats.losses[:5]) / 5
    last = sum(stats.losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert not model.training


def test_build_writes_models_manifest_and_readme(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    small = TinyAgentConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, batch_size=8, threads=1)
    result = build_tiny(out, seed=3, work_dir=tmp_path / "work", steps=3, adapter=False, detector=False,
                        dataset_sizes={"train": 120, "val": 10, "test": 20}, show_progress=False, log=lambda _: None,
                        config=small)
    assert (out / "agent-base" / "model.safetensors").is_file() and (out / "agent-base" / "tokenizer.json").is_file()
    manifest = read_manifest(out / "MANIFEST.sha256")
    assert "agent-base/model.safetensors" in manifest and "build.json" in manifest
    assert "lookout models build tiny --seed 3 --steps 3" in (out / "README.md").read_text()
    info = json.loads((out / "build.json").read_text())
    assert info["seed"] == 3 and info["agent_base"]["config"]["steps"] == 3
    assert {s.name: s.status for s in result.steps}["agent-adapter"] == "skipped"
    assert result.total_bytes == folder_bytes(out) < SIZE_LIMIT_BYTES


def test_committed_tiny_models_fit_the_size_limit_and_their_manifest() -> None:
    folder = tiny_dir()
    assert folder_bytes(folder) < SIZE_LIMIT_BYTES
    profile = load_profile("tiny", parts=("agent",))
    assert profile.agent is not None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(profile.agent.base)
    assert config.model_type == "llama" and config.tie_word_embeddings
    # small on purpose: at equal CPU time a 0.7 M model planned better than a 1.1 M one (docs/benchmarks.md)
    assert 500_000 <= json.loads((folder / "build.json").read_text())["agent_base"]["n_params"] <= 10_000_000
    adapter = profile.agent.adapter
    assert adapter is not None and (Path(adapter) / "adapter_model.safetensors").is_file()
    assert json.loads((Path(adapter) / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "models/tiny/agent-base"


def test_adapter_step_hands_the_trainer_the_base_and_data_and_keeps_only_the_adapter(tmp_path: Path) -> None:
    from lookout.models.tiny_build import build_adapter

    calls = {}
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [], "n": i}) + "\n" for i in range(5)))

    def fake_trainer(base, data, out, cfg):
        calls.update(base=base, data=data, cfg=cfg, rows=[json.loads(x)["n"] for x in Path(data).read_text().splitlines()])
        out.mkdir(parents=True)
        (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/abs/build/base"}))
        (out / "adapter_model.safetensors").write_bytes(b"lora")
        (out / "checkpoint-1").mkdir()
        return {"metrics": {"final_loss": 0.5}}

    info = build_adapter(fake_trainer, tmp_path / "base", train, tmp_path / "adapter",
                         tmp_path / "work", seed=5, steps=7, show_progress=False, conversations=3)
    assert calls["base"] == tmp_path / "base" and calls["cfg"].max_steps == 7 and calls["cfg"].load_in_4bit
    assert calls["rows"] == [0, 1, 2]  # the first `conversations` rows of the train split, in order
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json",
                                                                       "adapter_model.safetensors"]
    assert info["status"] == "done" and info["final_loss"] == 0.5
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "base"

    def broken_trainer(base, data, out, cfg):
        out.mkdir(parents=True)
        return {}

    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors|adapter_config.json"):
        build_adapter(broken_trainer, tmp_path / "base", train, tmp_path / "adapter2",
                      tmp_path / "work2", seed=5, steps=7, show_progress=False)


def test_without_a_gpu_a_gpu_built_detector_is_kept_not_replaced_by_a_weaker_one(tmp_path: Path) -> None:
    from lookout.models.registry import write_manifest
    from lookout.models.tiny_build import detector_recipe

    out = tmp_path / "tiny"
    out.mkdir()
    assert detector_recipe(out, cuda=False) == "cpu"  # nothing there yet
    assert detector_recipe(out, cuda=True) == "gpu"
    (out / "detector.pt").write_bytes(b"weights")
    (out / "detector_build.json").write_text(json.dumps({"recipe": ["lookout sim render-dataset ..."]}))
    write_manifest(out)
    assert detector_recipe(out, cuda=False) == "keep"
    assert detector_recipe(out, cuda=True, keep=True) == "keep"  # --keep-detector: rebuild only the agent
    assert detector_recipe(out, cuda=False, force_cpu=True) == "cpu"
    (out / "detector.pt").write_bytes(b"changed")  # no longer what the manifest says: rebuild
    assert detector_recipe(out, cuda=False) == "cpu"
    with pytest.raises(ValueError, match="--keep-detector"):  # asked to keep, but nothing valid to keep
        detector_recipe(out, cuda=True, keep=True)
    write_manifest(out)
    (out / "detector_build.json").write_text(json.dumps({"stages": []}))  # built by the CPU recipe: rebuild
    assert detector_recipe(out, cuda=False) == "cpu"
    # the committed folder keeps its GPU-built detector on a machine without CUDA
    assert detector_recipe(tiny_dir(), cuda=False) == "keep"


def test_recipe_sweep_reads_recipes_as_config_overrides() -> None:
    import importlib.util

    from lookout.paths import repo_root

    spec = importlib.util.spec_from_file_location("tiny_agent_recipes", repo_root() / "bench" / "tiny_agent_recipes.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    assert sweep.parse_recipe("h128:hidden_size=128,lr=0.004,device=cpu") == (
        "h128", {"hidden_size": 128, "lr": 0.004, "device": "cpu"})
    with pytest.raises(SystemExit, match="unknown setting 'width'"):
        sweep.parse_recipe("x:width=3")


def test_build_record_names_the_options_that_change_what_was_built() -> None:
    from lookout.models.tiny_build import DATASET_SIZES, build_command

    assert build_command(0, None, DATASET_SIZES) == "lookout models build tiny --seed 0"
    assert build_command(3, 10, DATASET_SIZES, device="cuda", keep_detector=True) == \
        "lookout models build tiny --seed 3 --steps 10 --device cuda --keep-detector"
