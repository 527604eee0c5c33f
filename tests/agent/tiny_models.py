"""Tiny Llama models for the agent tests, built once per session under pytest's tmp dir.

* random: random weights; under the grammar even these must always give valid plans.
* scripted: the same architecture trained for a few seconds to answer a handful of commands
  with known plans (a stand-in for the registry's trained tiny model), so the agent and ROS tests
  see real plans come out of the real 4-bit loading and decoding path.
Both are saved with save_pretrained and loaded back through `Planner`'s own loading code.
"""

from __future__ import annotations

from pathlib import Path

from lookout.agent.capabilities import Capabilities
from lookout.agent.plan import make_plan

CAPS = Capabilities.default()  # config/robot.yaml, what the node loads


def _p(reply: str, phrases: list[str], steps: list[dict], declined: bool = False) -> str:
    return make_plan(CAPS, reply=reply, phrases=phrases, steps=steps, declined=declined).to_json()


# (command, earlier turn or None, plan JSON): what the scripted model learns.
SCRIPT: list[tuple[str, tuple[str, str] | None, str]] = [
    ("find the red cup", None,
     _p("Looking for the red cup.", ["red cup"],
        [{"action": "search", "target": "red cup"}, {"action": "approach", "target": "red cup", "stop_distance_m": 0.5}])),
    ("do you see a blue box?", None,
     _p("Let me look.", ["blue box"], [{"action": "report", "target": "blue box"}])),
    ("turn left 90 degrees", None, _p("Turning left.", [], [{"action": "turn", "degrees": 90}])),
    ("move forward 1 meter", None, _p("Moving forward.", [], [{"action": "move", "meters": 1.0}])),
    ("pick up the red cup", None,
     _p("I can't pick things up: this robot has no arm.", [], [], declined=True)),
    ("wait here for a long time", None, _p("Waiting.", [], [{"action": "wait", "seconds": 30.0}])),
]
SCRIPT.append(("now the blue one", ("find the red cup", SCRIPT[0][2]),
               _p("Looking for the blue cup.", ["blue cup"],
                  [{"action": "search", "target": "blue cup"},
                   {"action": "approach", "target": "blue cup", "stop_distance_m": 0.5}])))


def build_models(root: Path) -> dict[str, Path]:
    """Build (or reuse) the random and the scripted tiny model under `root`."""
    from lookout.agent.random_llama import TINY_SHAPE, build_random_llama, build_tiny_tokenizer

    random_dir, scripted_dir = root / "random", root / "scripted"
    if not (random_dir / "config.json").is_file():
        tok = build_tiny_tokenizer(CAPS)
        build_random_llama(random_dir, tok, TINY_SHAPE, seed=0)
    if not (scripted_dir / "config.json").is_file():
        _train_scripted(random_dir, scripted_dir)
    return {"random": random_dir, "scripted": scripted_dir}


def _train_scripted(src: Path, dst: Path, max_steps: int = 200) -> None:
    """Full fine-tune of the tiny model on SCRIPT until greedy decoding reproduces every plan token
    with a margin (a few seconds on CPU), then save it like any trained model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lookout.agent.dialogue import Turn
    from lookout.agent.prompt import system_prompt

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    seqs, labels = [], []
    for command, prev, plan_json in SCRIPT:
        msgs = [{"role": "system", "content": system_prompt(CAPS)}]
        if prev is not None:
            msgs += Turn(*prev).messages()
        msgs.append({"role": "user", "content": command})
        prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": plan_json}], tokenize=True,
                                       return_dict=False)
        assert full[: len(prompt)] == prompt
        seqs.append(full)
        labels.append([-100] * len(prompt) + full[len(prompt):])
    width = max(map(len, seqs))
    pad = tok.pad_token_id
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    lab = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
    att = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    target, mask = lab[:, 1:], lab[:, 1:] != -100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        good = 0
        for _ in range(max_steps):
            opt.zero_grad()
            out = model(input_ids=ids, attention_mask=att, labels=lab)
            out.loss.backward()
            opt.step()
            with torch.no_grad():
                logits = out.logits[:, :-1]
                top2 = logits.topk(2, dim=-1)
                right = (top2.indices[..., 0] == target) & (top2.values[..., 0] - top2.values[..., 1] > 2.0)
                good = good + 1 if bool(right[mask].all()) else 0
            if good >= 3:  # every plan token wins by a clear margin (4-bit rounding must not flip it)
                break
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
