"""The planner: a 4-bit Llama (plus an optional LoRA adapter) turns a command into a validated plan.

Loading: `AutoModelForCausalLM` in NF4 with double quantisation via bitsandbytes (or full precision
when asked), the tokenizer with its chat template, and a PEFT adapter that can be swapped at run
time without reloading the base. Planning: the prompt is the tokenizer's chat template over the
capability-derived system prompt, the last dialogue turns and the cleaned command; decoding is
greedy under the plan grammar (`lookout.agent.grammar`), so the text always parses; `parse_plan`
validates it again. Anything else (unfinished output, an invalid plan) gives a result without a
plan: the robot never sees a partial or unvalidated plan. Model text is only ever parsed as JSON.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lookout.agent.capabilities import MOTION_ACTIONS, Capabilities
from lookout.agent.commands import sanitize_command
from lookout.agent.config import ModelConfig, resolve_path
from lookout.agent.decoding import make_decoder, unwrap_causal_lm
from lookout.agent.dialogue import Turn
from lookout.agent.grammar import PlanGrammar
from lookout.agent.grounding import clarification, grounded_candidates, ungrounded_phrases
from lookout.agent.nf4_cpu import repair_cpu_nf4
from lookout.agent.plan import PlanBase, PlanError, make_plan, parse_plan
from lookout.agent.prompt import system_prompt
from lookout.hf_loading import HF_LOAD_LOCK, check_causal_lm

log = logging.getLogger(__name__)

FAILED_REPLY = "Sorry, I could not make a safe plan for that, so I am not moving."
UNSURE_REPLY = "Sorry, I'm not sure what you want me to do, so I am not moving. Could you say it another way?"


class ModelNotFoundError(FileNotFoundError):
    """The model or adapter directory is missing or incomplete."""


@dataclass(frozen=True)
class PlanTimings:
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_ms: float = 0.0  # until the first new token is chosen
    decode_ms: float = 0.0  # the remaining tokens
    total_ms: float = 0.0  # command in, validated plan out

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.new_tokens - 1) / (self.decode_ms / 1000.0) if self.new_tokens > 1 and self.decode_ms > 0 else 0.0


@dataclass(frozen=True)
class PlanResult:
    """A validated plan, or no plan and the reason. Never a partial plan."""

    plan: PlanBase | None
    error: str
    raw_text: str
    timings: PlanTimings = field(default_factory=PlanTimings)
    command: str = ""
    truncated: bool = False
    ungrounded: tuple[str, ...] = ()  # targets the model named first that nobody said (see `regrounded`)
    regrounded: bool = False  # the plan is the re-decode under grounded phrases; else such a plan became a question
    first_raw_text: str = ""  # the model's first output, when it was replaced (ungrounded target or unsure)
    confidence: float = 1.0  # the least probable choice the model made among what the grammar allowed
    unsure: bool = False  # the plan would have moved the robot on a confidence under min_plan_confidence: a question

    @property
    def ok(self) -> bool:
        return self.plan is not None

    @property
    def reply(self) -> str:
        return self.plan.reply if self.plan is not None else FAILED_REPLY

    @property
    def plan_json(self) -> str:
        return self.plan.to_json() if self.plan is not None else ""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"model.device is {device!r} but no CUDA device is available")
    return dev


def _check_model_dir(path: Path, what: str) -> None:
    marker = "adapter_config.json" if what == "adapter" else "config.json"
    if not (path / marker).is_file():
        hint = "train one with the trainer" if what == "adapter" else "build the tiny models with `make models`"
        raise ModelNotFoundError(f"{what} directory {path} has no {marker}: {hint} or fix model.{'adapter' if what == 'adapter' else 'base'}")


def load_base_model(cfg: ModelConfig) -> tuple[Any, Any]:
    """(model, tokenizer) from `cfg.base`: 4-bit NF4 + double quant, or full precision."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    path = resolve_path(cfg.base)
    _check_model_dir(path, "model")
    device = resolve_device(cfg.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": str(device)}}
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    with HF_LOAD_LOCK:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    check_causal_lm(model, str(path))
    if cfg.load_in_4bit and device.type == "cpu":
        repair_cpu_nf4(model)
    model.eval()
    if not tokenizer.chat_template:
        raise ModelNotFoundError(f"tokenizer in {path} has no chat template (install LLAMA3_CHAT_TEMPLATE)")
    return model, tokenizer


@contextlib.contextmanager
def _torch_threads(n: int, device: torch.device) -> Iterator[None]:
    if n <= 0 or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Planner:
    """Command -> validated plan, with a loaded base model and swappable LoRA adapters."""

    def __init__(self, cfg: ModelConfig, caps: Capabilities, *, model: Any = None, tokenizer: Any = None,
                 constrained: bool = True) -> None:
        self.cfg = cfg
        self.caps = caps
        self.constrained = constrained
        self._lock = threading.RLock()
        if model is None or tokenizer is None:
            model, tokenizer = load_base_model(cfg)
        self.model = model
        self.tokenizer = tokenizer
        self.adapters: dict[str, str] = {}
        self.active_adapter: str | None = None
        if cfg.adapter:
            try:
                self.load_adapter(cfg.adapter, cfg.adapter_name)
            except ModelNotFoundError as exc:
                if cfg.adapter_required:
                    raise
                log.warning("%s; planning with the bare base model", exc)
        lm = unwrap_causal_lm(self.model)
        self.vocab_size = int(lm.config.vocab_size)
        self.stop_token_ids = self._stop_ids(lm)
        self.grammar = PlanGrammar(tokenizer, caps, self.vocab_size, self.stop_token_ids)
        self.decoder = make_decoder(self.model, cfg.max_cache_tokens, fast=cfg.fast_decode, cuda_graphs=cfg.cuda_graphs)
        self.system_prompt = system_prompt(caps)

    def _stop_ids(self, lm: Any) -> list[int]:
        ids: set[int] = set()
        for source in (getattr(lm.generation_config, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        eot = self.tokenizer.convert_tokens_to_ids("<|eot_id|>")
        if isinstance(eot, int) and eot != self.tokenizer.unk_token_id and eot >= 0:
            ids.add(eot)
        return sorted(ids)

    # --- adapters --------------------------------------------------------------------------
    def load_adapter(self, path: str | Path, name: str = "default", activate: bool = True) -> None:
        """Add a PEFT LoRA adapter; the 4-bit base stays loaded (no reload)."""
        from peft import PeftModel

        path = resolve_path(str(path))
        _check_model_dir(path, "adapter")
        with self._lock:
            if hasattr(self.model, "load_adapter") and hasattr(self.model, "peft_config"):
                with HF_LOAD_LOCK:
                    self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            else:
                with HF_LOAD_LOCK:
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name,
                                                           is_trainable=False)
                self.model.eval()
            self.adapters[name] = str(path)
            if activate:
                self.use_adapter(name)
            elif hasattr(self, "decoder"):
                self.decoder.invalidate()

    def use_adapter(self, name: str | None) -> None:
        """Switch to adapter `name`, or to the bare base model with None."""
        with self._lock:
            if name is not None and name not in self.adapters:
                raise KeyError(f"adapter {name!r} is not loaded (loaded: {sorted(self.adapters)})")
            if self.adapters:
                inner = self.model.base_model
                if name is None:
                    inner.disable_adapter_layers()
                else:
                    inner.enable_adapter_layers()
                    self.model.set_adapter(name)
            self.active_adapter = name
            if hasattr(self, "decoder"):
                self.decoder.invalidate()  # cached keys/values and a captured graph belong to the old adapter

    # --- prompt ----------------------------------------------------------------------------
    def messages(self, command: str, history: Sequence[Turn] = ()) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}]
        for turn in list(history)[-self.cfg.history_turns:] if self.cfg.history_turns else []:
            msgs.extend(turn.messages())
        msgs.append({"role": "user", "content": command})
        return msgs

    def prompt_ids(self, command: str, history: Sequence[Turn] = ()) -> list[int]:
        """Token ids of the chat prompt. If prompt + plan would not fit the cache, the oldest turns go
        first, then the command is shortened (text that tokenizes badly, e.g. rare scripts)."""
        turns = list(history)[-self.cfg.history_turns:] if self.cfg.history_turns else []
        budget = self.decoder.capacity() - self.cfg.max_new_tokens
        while True:
            ids = self.tokenizer.apply_chat_template(self.messages(command, turns), add_generation_prompt=True,
                                                     tokenize=True, return_dict=False)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            ids = [int(i) for i in ids]
            if len(ids) <= budget:
                return ids
            if turns:
                turns = turns[1:]
            elif command:
                command = command[: len(command) * 3 // 4]
            else:
                return ids  # the system prompt alone is too long: generate_ids reports it

    # --- decoding --------------------------------------------------------------------------
    @torch.no_grad()
    def generate_ids(self, prompt: list[int], max_new_tokens: int, *, constrained: bool | None = None,
                     stop_at_eos: bool = True, should_abort: Callable[[], bool] | None = None,
                     allowed_phrases: Sequence[str] | None = None) -> tuple[list[int], PlanTimings, str, float]:
        """Greedy decode; returns (new ids, timings, error, confidence: the least probability of a chosen
        token among those allowed). With the grammar, stops when the plan closes; `allowed_phrases`
        (grammar only) restricts the plan's phrases to that list."""
        constrained = self.constrained if constrained is None else constrained
        with self._lock, _torch_threads(self.cfg.cpu_threads, self.decoder.device):
            dec = self.decoder
            t0 = time.perf_counter()
            if len(prompt) + max_new_tokens > dec.capacity():
                return [], PlanTimings(prompt_tokens=len(prompt)), (
                    f"prompt of {len(prompt)} tokens plus {max_new_tokens} new tokens exceeds the cache"), 0.0
            constraint = self.grammar.constraint(allowed_phrases) if constrained else None
            dec.start(prompt)
            out: list[int] = []
            error = ""
            confidence = 1.0
            t_first = None
            stops = set(self.stop_token_ids)
            for _ in range(max_new_tokens):
                if should_abort is not None and should_abort():
                    error = "cancelled"
                    break
                bitmask = None
                if constraint is not None:
                    bitmask = constraint.fill_next_token_bitmask()  # CPU work, overlaps the GPU step
                    if constraint.dead_end:
                        error = "the grammar allows no continuation"
                        break
                token = dec.pick(bitmask)  # waits for the step: the one host sync per token
                if t_first is None:
                    t_first = time.perf_counter()
                if token in stops and (constraint is not None or stop_at_eos):
                    if constraint is not None and not constraint.accept_token(token):
                        error = f"token {token} rejected by the grammar"
                    break
                out.append(token)
                confidence = min(confidence, dec.last_prob)
                if len(out) < max_new_tokens:
                    dec.advance(token)  # launch the next step first, then let the grammar catch up
                if constraint is not None:
                    if not constraint.accept_token(token):
                        error = f"token {token} rejected by the grammar"
                        out.pop()
                        break
                    if constraint.is_completed():
                        break
                if len(out) >= max_new_tokens:
                    break
            if constraint is not None and not error and not constraint.is_completed():
                error = f"the plan did not finish within {max_new_tokens} tokens"
            t_end = time.perf_counter()
        t_first = t_first or t_end
        timings = PlanTimings(prompt_tokens=len(prompt), new_tokens=len(out), prefill_ms=(t_first - t0) * 1000,
                              decode_ms=(t_end - t_first) * 1000, total_ms=(t_end - t0) * 1000)
        return out, timings, error, confidence

    def decode_text(self, ids: list[int]) -> str:
        """The text of generated ids, byte-exact (what the grammar saw)."""
        vocab = self.grammar.vocab
        if all(0 <= i < vocab.size and vocab.token_bytes[i] for i in ids):
            return b"".join(vocab.token_bytes[i] for i in ids).decode("utf-8", errors="replace")
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def plan(self, command: str, history: Sequence[Turn] = (), *,
             should_abort: Callable[[], bool] | None = None) -> PlanResult:
        """Plan `command` (untrusted text) given earlier turns. Never raises for bad model output;
        `should_abort` is polled per token (a newer command or a stop makes this one moot)."""
        t0 = time.perf_counter()
        clean = sanitize_command(command, self.cfg.max_command_chars)
        prompt = self.prompt_ids(clean.text, history)
        ids, timings, error, confidence = self.generate_ids(prompt, self.cfg.max_new_tokens,
                                                            should_abort=should_abort)
        raw = self.decode_text(ids)
        plan: PlanBase | None = None
        ungrounded: list[str] = []
        if not error:
            try:
                plan = parse_plan(raw, self.caps)
            except PlanError as exc:
                error = str(exc)
        regrounded, first_raw = False, ""
        if plan is not None and self.cfg.grounded_targets:
            seen = list(history)[-self.cfg.history_turns:] if self.cfg.history_turns else []
            ungrounded = ungrounded_phrases(_targets(plan), clean.text, seen)
            if ungrounded:
                first_raw = raw
                plan, raw, confidence = self._regrounded(prompt, clean.text, seen, should_abort, ungrounded)
                regrounded = plan is not None
                log.warning("plan for %r names %s, which the conversation never did: %s", clean.text[:80],
                            ungrounded, "re-decoded under grounded phrases" if regrounded else "asking again")
                if plan is None:
                    plan = make_plan(self.caps, reply=clarification(ungrounded), phrases=[], steps=[], declined=True)
        unsure = plan is not None and confidence < self.cfg.min_plan_confidence and bool(
            MOTION_ACTIONS.intersection(plan.actions))
        if unsure:
            log.warning("plan for %r would move the robot but the model is unsure (confidence %.2f < %.2f): "
                        "asking again", clean.text[:80], confidence, self.cfg.min_plan_confidence)
            first_raw = first_raw or raw
            plan = make_plan(self.caps, reply=UNSURE_REPLY, phrases=[], steps=[], declined=True)
        total = (time.perf_counter() - t0) * 1000
        timings = PlanTimings(timings.prompt_tokens, timings.new_tokens, timings.prefill_ms, timings.decode_ms, total)
        if error:
            log.warning("no plan for %r: %s", clean.text[:80], error)
        return PlanResult(plan=plan, error=error, raw_text=raw, timings=timings, command=clean.text,
                          truncated=clean.truncated, ungrounded=tuple(ungrounded), regrounded=regrounded,
                          first_raw_text=first_raw, confidence=confidence, unsure=unsure)

    def _regrounded(self, prompt: list[int], command: str, history: Sequence[Turn],
                    should_abort: Callable[[], bool] | None,
                    rejected: Sequence[str] = ()) -> tuple[PlanBase | None, str, float]:
        """Decode again with every phrase restricted to `grounded_candidates`; (plan or None, its text,
        the decode's confidence). The reply is free text, so a reply that still names a `rejected`
        phrase ("Looking for the plant." over a search for the keys) would tell the user the wrong
        thing: such a plan is None too, and the planner asks."""
        if not self.constrained:
            return None, "", 1.0
        limit = self.grammar.rules.max_chars.get(b"phrase") or 200
        candidates = grounded_candidates(command, history, max_chars=limit)
        ids, _, error, confidence = self.generate_ids(prompt, self.cfg.max_new_tokens, should_abort=should_abort,
                                                      allowed_phrases=candidates)
        raw = self.decode_text(ids)
        if error:
            return None, raw, confidence
        try:
            plan = parse_plan(raw, self.caps)
        except PlanError:
            return None, raw, confidence
        if ungrounded_phrases(_targets(plan), command, history) or _names_any(plan.reply, rejected):
            return None, raw, confidence
        return plan, raw, confidence


def _names_any(text: str, phrases: Sequence[str]) -> bool:
    """Whether `text` contains one of `phrases` as whole words (case-insensitive)."""
    folded = text.casefold()
    return any(re.search(rf"(?<!\w){re.escape(p.casefold())}(?!\w)", folded) for p in phrases if p.strip())


def _targets(plan: PlanBase) -> list[str]:
    """The plan's phrases and step targets, each once."""
    return list(dict.fromkeys([*plan.phrases, *(t for t in (s.target_phrase() for s in plan.steps) if t)]))
