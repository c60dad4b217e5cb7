"""Text generation for evaluation and serving: one interface, three backends.

``evaluate`` and ``serve`` both hand a backend a batch of chats (messages + optional tool
schemas) and get one :class:`Completion` per chat back, in order. The backend renders each chat
with the model's own chat template, so the prompt the model sees is the one it was trained on.

- :class:`TransformersBackend`: Hugging Face transformers, left-padded batches, greedy unless a
  temperature is given. Runs anywhere (fp32 on CPU, bf16/fp16 on CUDA).
- :class:`VllmBackend`: vLLM's offline ``LLM.generate`` (continuous batching, much faster on a
  GPU). Import-guarded: vLLM is optional and not installed on the CPU development machines, so
  this class is written against vLLM's documented API and is not exercised by the test suite.
- :class:`ScriptedBackend`: returns text a Python function chooses per chat. For tests and for
  re-scoring given predictions through the Python API; deliberately not reachable from the CLI.

:func:`load_backend` picks vLLM when it is installed and a GPU is present, transformers otherwise.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from pipesql.config import machine
from pipesql.config.settings import option

BACKENDS = ("auto", "transformers", "vllm")


@dataclass
class BackendSettings:
    """The generation settings that evaluate and serve share; their ``Settings`` inherit them."""

    backend: str = option("auto", "Generation backend: vLLM when installed with a GPU, else transformers.",
                          choices=BACKENDS)
    device: str = option("auto", "transformers device: auto, cpu, cuda, cuda:N.")
    dtype: str = option("auto", "auto (bf16/fp16 on GPU, fp32 on CPU), float32, bfloat16, float16.")
    prefix_cache: int = option(-1, "transformers: keep the key/value caches of this many recent prompts, "
                               "so a prompt that starts like one of them (an agent's next step) computes "
                               "only the rest; prompts then go one at a time. -1: 16 on CPU, where the "
                               "prompt is most of the time; 0 (batched) on GPU.")
    gpu_memory_utilization: float = option(0.9, "vLLM: share of GPU memory to use.")


@dataclass(frozen=True)
class Chat:
    """One conversation to continue: OpenAI-style messages, plus the tool schemas (OpenAI
    ``{"type": "function", "function": {...}}`` objects) the chat template should announce."""

    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] | None = None

    @classmethod
    def of(cls, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None) -> "Chat":
        return cls(tuple(messages), tuple(tools) if tools else None)


@dataclass(frozen=True)
class SamplingParams:
    """How to generate. ``temperature == 0`` means greedy decoding. Hashable, so that requests
    with equal parameters can be batched together."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" (end of turn or a stop string) or "length"


# Told how many more answers of a call are finished, as they finish; over one call the counts
# add up to the number of chats (a backend that cannot tell earlier reports them all at its end).
Finished = Callable[[int], None]
# Asked, while a call generates, whether the caller of chat ``i`` has gone (a client that
# disconnected): a backend that can stops generating for it and answers it with what it has.
Cancelled = Callable[[int], bool]


class Backend(Protocol):
    name: str  # what the model is called in results and in /v1/models

    def complete(self, chats: Sequence[Chat], params: SamplingParams,
                 on_finished: Finished | None = None, cancelled: Cancelled | None = None) -> list[Completion]:
        """One completion per chat, in the order given."""
        ...


def _report_all(chats: Sequence[Chat], on_finished: Finished | None) -> None:
    if on_finished is not None and chats:
        on_finished(len(chats))


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string (which is dropped, as OpenAI does)."""
    cuts = [index for index in (text.find(s) for s in stop if s) if index >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


def template_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them. OpenAI clients send tool-call arguments as a JSON
    string; Qwen/Hermes templates serialise ``arguments`` with ``tojson`` and would quote the
    string a second time, so decode it to an object first."""
    import json

    prepared = []
    for message in messages:
        message = dict(message)
        if message.get("content") is None:
            message["content"] = ""
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                call = dict(call)
                function = dict(call.get("function") or {})
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    try:
                        function["arguments"] = json.loads(arguments) if arguments.strip() else {}
                    except ValueError:
                        pass  # not JSON: the template will show it as the client sent it
                call["function"] = function
                calls.append(call)
            message["tool_calls"] = calls
        prepared.append(message)
    return prepared


def render_prompt(tokenizer: Any, chat: Chat) -> str:
    """The prompt text for one chat, ending where the assistant's answer begins."""
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
    if chat.tools:
        kwargs["tools"] = list(chat.tools)
    text = tokenizer.apply_chat_template(template_messages(chat.messages), **kwargs)
    if not isinstance(text, str):
        raise TypeError(f"chat template returned {type(text).__name__}, expected text")
    return text


class TransformersBackend:
    """Batched generation with Hugging Face transformers.

    Prompts are sorted by length and cut into batches of ``batch_size`` so that each batch pads
    little; padding is on the left so every row's answer starts at the same position. With a
    prefix cache (:mod:`pipesql.models.prefix_cache`) prompts go one at a time instead, each
    starting from the cached keys and values of the longest prefix it shares with a recent prompt.
    A lock serialises calls: one model, one forward pass at a time."""

    def __init__(self, model_dir: str | Path, *, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 8, prefix_cache: int = -1, name: str | None = None) -> None:
        from pipesql.models.loading import load_model_and_tokenizer
        from pipesql.models.prefix_cache import PrefixCache

        self.model_dir = Path(model_dir)
        self.name = name or self.model_dir.name
        self.device = machine.pick_device(device)
        self.batch_size = max(1, batch_size)
        self.model, self.tokenizer = load_model_and_tokenizer(self.model_dir, dtype=dtype, device=self.device)
        self.tokenizer.padding_side = "left"
        self.model.eval()
        self._lock = threading.Lock()
        if prefix_cache < 0:
            prefix_cache = 16 if self.device == "cpu" else 0
        self.prefix_cache = PrefixCache(prefix_cache) if prefix_cache > 0 else None

    def _end_token_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def _generation_config(self, params: SamplingParams):
        from transformers import GenerationConfig

        # Built from scratch rather than from the model's generation_config.json: instruct models
        # ship sampling defaults (do_sample, top_k, repetition_penalty) that would make a
        # "greedy" evaluation silently stochastic.
        options: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": not params.greedy,
            "eos_token_id": self._end_token_ids(),
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if not params.greedy:
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            options["stop_strings"] = list(params.stop)
        return GenerationConfig(**options)

    def complete(self, chats: Sequence[Chat], params: SamplingParams,
                 on_finished: Finished | None = None, cancelled: Cancelled | None = None) -> list[Completion]:
        prompts = [render_prompt(self.tokenizer, chat) for chat in chats]
        with self._lock:
            return self._complete_prompts(prompts, params, on_finished, cancelled)

    def _complete_prompts(self, prompts: list[str], params: SamplingParams,
                          on_finished: Finished | None = None, cancelled: Cancelled | None = None) -> list[Completion]:
        import torch
        from transformers import StoppingCriteriaList

        if params.seed is not None:
            torch.manual_seed(params.seed)
        config = self._generation_config(params)
        end_ids = set(config.eos_token_id) | {self.tokenizer.pad_token_id}
        if self.prefix_cache is not None:
            config.return_dict_in_generate = True  # for the caches, kept for the next prompts
            return [self._complete_from_prefix(prompt, params, config, end_ids, on_finished,
                                               cancelled_rows(cancelled, [index]))
                    for index, prompt in enumerate(prompts)]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            encoded = self.tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(self.device)
            watcher = finished_rows_watcher(end_ids, len(batch), on_finished)
            criteria = [c for c in (watcher, cancelled_rows(cancelled, batch)) if c is not None]
            with torch.inference_mode():
                output = self.model.generate(**encoded, generation_config=config, tokenizer=self.tokenizer,
                                             stopping_criteria=StoppingCriteriaList(criteria))
            if watcher:
                watcher.report_rest()
            new_tokens = output[:, encoded["input_ids"].shape[1]:].tolist()
            for row, index in enumerate(batch):
                results[index] = self._completion(new_tokens[row], lengths[index], params, end_ids)
        return [r for r in results if r is not None]

    def _complete_from_prefix(self, prompt: str, params: SamplingParams, config: Any, end_ids: set[int],
                              on_finished: Finished | None, stop_if_cancelled: Any = None) -> Completion:
        import torch
        from transformers import StoppingCriteriaList

        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        cache = self.prefix_cache.start(ids)
        encoded = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            output = self.model.generate(input_ids=encoded, attention_mask=torch.ones_like(encoded),
                                         past_key_values=cache, generation_config=config, tokenizer=self.tokenizer,
                                         stopping_criteria=StoppingCriteriaList([stop_if_cancelled] if stop_if_cancelled else []))
        sequence = output.sequences[0].tolist()
        # The cache holds every token but the last one generated (never fed back in).
        self.prefix_cache.keep(sequence[:output.past_key_values.get_seq_length()], output.past_key_values)
        if on_finished is not None:
            on_finished(1)
        return self._completion(sequence[len(ids):], len(ids), params, end_ids)

    def _completion(self, tokens: list[int], prompt_tokens: int, params: SamplingParams,
                    end_ids: set[int]) -> Completion:
        ended = next((k for k, token in enumerate(tokens) if token in end_ids), None)
        kept = tokens if ended is None else tokens[:ended]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        text, stopped = truncate_at_stop(text, params.stop)
        finish = "stop" if ended is not None or stopped or len(kept) < params.max_new_tokens else "length"
        return Completion(text, prompt_tokens, len(kept), finish)


def cancelled_rows(cancelled: Cancelled | None, indices: Sequence[int]):
    """A stopping criterion that ends the rows of a ``generate`` batch whose caller has gone
    (row ``r`` is chat ``indices[r]``); ``None`` when nobody can cancel."""
    if cancelled is None:
        return None
    import torch
    from transformers import StoppingCriteria

    class CancelledRows(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([cancelled(index) for index in indices], dtype=torch.bool, device=input_ids.device)

    return CancelledRows()


def finished_rows_watcher(end_ids: set[int], rows: int, on_finished: Finished | None):
    """A stopping criterion that never stops anything: it reports rows of a ``generate`` batch as
    they emit an end token, so progress moves per answer instead of once per batch. ``None``
    when nobody listens."""
    if on_finished is None:
        return None
    import torch
    from transformers import StoppingCriteria

    class FinishedRows(StoppingCriteria):
        def __init__(self) -> None:
            self.done = torch.zeros(rows, dtype=torch.bool)
            self.end_ids = torch.tensor(sorted(end_ids))

        def __call__(self, input_ids, scores, **kwargs):
            ended = torch.isin(input_ids[:, -1].cpu(), self.end_ids) & ~self.done
            if ended.any():
                self.done |= ended
                on_finished(int(ended.sum()))
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        def report_rest(self) -> None:
            # rows cut by max_new_tokens or a stop string never emitted an end token
            if not self.done.all():
                on_finished(int((~self.done).sum()))
                self.done[:] = True

    return FinishedRows()


class VllmBackend:
    """vLLM offline inference (``vllm.LLM``). vLLM schedules its own batches, so a whole list of
    chats goes in one ``generate`` call.

    Written against vLLM's documented offline API (``LLM(model=...)``, ``LLM.get_tokenizer``,
    ``LLM.generate(prompts, SamplingParams)`` with ``{"prompt_token_ids": [...]}`` prompts,
    returning ``RequestOutput`` objects whose ``outputs[0]`` has ``text``, ``token_ids`` and
    ``finish_reason``). vLLM cannot be installed on the CPU machines this project is developed
    on, so this class is untested here."""

    def __init__(self, model_dir: str | Path, *, dtype: str = "auto", gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0, name: str | None = None) -> None:
        try:
            from vllm import LLM
        except ImportError as error:
            raise RuntimeError(f"the vllm backend needs vLLM ({error}); install it on a CUDA machine "
                               "or use --backend transformers") from None

        self.model_dir = Path(model_dir)
        self.name = name or self.model_dir.name
        options: dict[str, Any] = {"model": str(self.model_dir), "dtype": dtype,
                                   "gpu_memory_utilization": gpu_memory_utilization, "seed": seed}
        if max_model_len:
            options["max_model_len"] = max_model_len
        self.llm = LLM(**options)
        self.tokenizer = self.llm.get_tokenizer()
        self._lock = threading.Lock()

    def complete(self, chats: Sequence[Chat], params: SamplingParams,
                 on_finished: Finished | None = None, cancelled: Cancelled | None = None) -> list[Completion]:
        from vllm import SamplingParams as VllmSamplingParams

        # Token ids rather than text, tokenized as TransformersBackend does (no added BOS: the
        # chat template writes every special token itself).
        prompts = [{"prompt_token_ids": self.tokenizer(render_prompt(self.tokenizer, chat),
                                                       add_special_tokens=False).input_ids}
                   for chat in chats]
        sampling = VllmSamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
        )
        with self._lock:
            outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        _report_all(chats, on_finished)
        return [
            Completion(
                text=output.outputs[0].text,
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=len(output.outputs[0].token_ids),
                finish_reason=output.outputs[0].finish_reason or "stop",
            )
            for output in outputs
        ]


@dataclass
class ScriptedBackend:
    """Answers with whatever ``answer(messages)`` returns. Records every chat it was given, so a
    test can check what the model would have seen."""

    answer: Callable[[list[dict[str, Any]]], str]
    name: str = "scripted"
    calls: list[tuple[Chat, SamplingParams]] = field(default_factory=list)

    def complete(self, chats: Sequence[Chat], params: SamplingParams,
                 on_finished: Finished | None = None, cancelled: Cancelled | None = None) -> list[Completion]:
        completions = []
        for chat in chats:
            self.calls.append((chat, params))
            text, _ = truncate_at_stop(self.answer(list(chat.messages)), params.stop)
            completions.append(Completion(text, 0, len(text.split()), "stop"))  # words stand in for tokens
            _report_all([chat], on_finished)
        return completions


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None and machine.cuda_available()


def load_backend(model: str | Path, backend: str = "auto", *, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 8, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, prefix_cache: int = -1) -> Backend:
    """Load ``model`` with the requested backend; ``auto`` means vLLM when it is installed and a
    GPU is visible, transformers otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    from pipesql.models.registry import model_id, resolve_model

    # A hub id goes to from_pretrained unchanged; offline, loading fails fast (require_loadable).
    model_dir = Path(resolve_model(model))
    name = model_id(model)
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        return VllmBackend(model_dir, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                           max_model_len=max_model_len, name=name)
    return TransformersBackend(model_dir, device=device, dtype=dtype, batch_size=batch_size,
                               prefix_cache=prefix_cache, name=name)
