"""The VLM explainer: a transformers image-text-to-text chat model steered by the expert.

Any model ``AutoModelForImageTextToText`` can load works (Qwen2.5-VL, Qwen2-VL, SmolVLM);
weights come from the same resolver as the vision experts (local folder, installed offline
bundle, Hugging Face cache), never from the network. bf16 on CUDA, float32 on CPU. A peft
LoRA adapter trained by a VLM round can be attached; its model version becomes part of the
revision source (``vlm:<version>``) and of the cache key.

Generation is greedy, so a cached answer is the answer. An unreadable answer is retried
once with the stricter instruction, then the template explains instead and the result is
marked ``fallback`` so the inspector knows which words came from where.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workstation.core.errors import CancelledError, MissingModelError, UserError
from workstation.device import resolve_device
from workstation.explain.cache import ResultCache, array_digest, cache_key
from workstation.explain.parse import parse_explanation
from workstation.explain.prompts import (
    DEFAULT_OPTIONS,
    ExplainRequest,
    Prompt,
    PromptOptions,
    build_prompt,
)
from workstation.explain.result import (
    ExplainResult,
    StopCheck,
    TokenCallback,
    template_result,
)

DEFAULT_VLM = "qwen2.5-vl-3b"
ADAPTER_CONFIG = "adapter_config.json"
RETRY_NOTICE = "\n[answer unreadable; retrying with a stricter instruction]\n"


@dataclass(frozen=True)
class LoadedVlm:
    """A model and its processor on a device; owned by the one thread that runs them."""

    model: Any
    processor: Any
    device: str
    name: str


def adapter_folder(path: Path | str) -> Path:
    """The folder holding ``adapter_config.json``: the path itself or its ``adapter/``.

    Model versions store their artefacts in a folder; a VLM round writes the peft adapter
    either there directly or in an ``adapter`` subfolder.
    """
    folder = Path(path).expanduser()
    for candidate in (folder, folder / "adapter"):
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    raise UserError(
        f"no LoRA adapter in {folder}: expected {ADAPTER_CONFIG} there or in {folder / 'adapter'}"
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _cached_hub_repo(name: str) -> Path | None:
    """The local cache folder of a hub id such as ``Qwen/Qwen2-VL-2B-Instruct``, offline.

    Catalogue names and folders are the resolver's business; a raw hub id that is not a
    folder here is looked up in the Hugging Face cache without touching the network.
    """
    if not HUB_ID.match(name) or Path(name).expanduser().exists():
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached (or not a valid id): say how to get it
        raise MissingModelError(
            f"model {name!r} is neither a folder here nor in the local Hugging Face cache. "
            f"On a machine with "
            f"internet run `huggingface-cli download {name}`, or bundle it there with "
            f"`iad-workstation models bundle NAME OUT.zip --from DIR` and install the zip here"
        ) from None


def load_vlm(
    name: str = DEFAULT_VLM,
    *,
    folder: Path | str | None = None,
    adapter: Path | str | None = None,
    device: str = "auto",
) -> LoadedVlm:
    """Load a catalogue name, an installed bundle or a model folder; optionally a LoRA adapter.

    Missing weights raise :class:`MissingModelError` (one line that says how to get them);
    a folder that is not an image-text-to-text model raises :class:`UserError`.
    """
    from workstation.pretrained import weights

    if folder is None:
        folder = _cached_hub_repo(name)
    resolved = weights.resolve(name, folder=folder)
    if resolved.family != "vlm":
        raise UserError(f"{name!r} is a {resolved.family} model, not a vision-language model")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    target = resolve_device(device)
    dtype = torch.bfloat16 if target.startswith("cuda") else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(resolved.path)
        model = AutoModelForImageTextToText.from_pretrained(resolved.path, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(
            f"cannot load {resolved.path} as an image-text-to-text chat model: "
            f"{_first_line(exc)}"
        ) from None
    if adapter is not None:
        from peft import PeftModel

        folder_path = adapter_folder(adapter)
        try:
            model = PeftModel.from_pretrained(model, folder_path)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise UserError(
                f"the LoRA adapter in {folder_path} does not fit {resolved.name}: "
                f"{_first_line(exc)}"
            ) from None
    model.to(target).eval()
    return LoadedVlm(model=model, processor=processor, device=target, name=resolved.name)


def _streamer(tokenizer: Any, on_token: TokenCallback) -> Any:
    """A transformers streamer that hands each finished piece of text to ``on_token``."""
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_token(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _stop_when(should_stop: StopCheck) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            return bool(should_stop())

    return StoppingCriteriaList([Stop()])


class VlmExplainer:
    """Explains requests with a loaded VLM; results cached by content and version."""

    def __init__(
        self,
        loaded: LoadedVlm,
        *,
        version: str | None = None,
        max_new_tokens: int = 256,
        options: PromptOptions = DEFAULT_OPTIONS,
        cache: ResultCache | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise UserError("explainer.max_new_tokens must be at least 1")
        self.loaded = loaded
        self.version = version or loaded.name
        self.max_new_tokens = max_new_tokens
        self.options = options
        self.cache = cache if cache is not None else ResultCache()

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_VLM,
        *,
        folder: Path | str | None = None,
        adapter: Path | str | None = None,
        version: str | None = None,
        device: str = "auto",
        **options: Any,
    ) -> VlmExplainer:
        """Load weights (and the adapter of model ``version``) and build the explainer."""
        if adapter is not None and version is None:
            raise UserError("a LoRA adapter needs the model version it belongs to")
        loaded = load_vlm(name, folder=folder, adapter=adapter, device=device)
        return cls(loaded, version=version, **options)

    @property
    def source(self) -> str:
        return f"vlm:{self.version}"

    def explain(
        self,
        request: ExplainRequest,
        *,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ExplainResult:
        """Explain ``request``; ``on_token`` streams text.

        ``should_stop`` is polled after every token; when it turns True generation ends and
        :class:`CancelledError` is raised (nothing is cached).
        """
        started = time.perf_counter()
        prompt = build_prompt(request, options=self.options)
        map_digest = array_digest(request.anomaly_map.map) + (
            array_digest(request.mask) if request.mask is not None else ""
        )
        key = cache_key(
            image=array_digest(request.image),
            anomaly_map=map_digest,
            model_version=f"{self.source}|{self.max_new_tokens}",
            prompt=prompt.hash,
        )
        record = self.cache.get(key)
        if record is not None:
            return ExplainResult.from_record(record, cached=True)
        answers: list[str] = []
        tokens = 0
        result: ExplainResult | None = None
        for attempt in (1, 2):
            if attempt == 2:
                if on_token is not None:
                    on_token(RETRY_NOTICE)
                prompt = build_prompt(request, options=self.options, strict=True)
            text, count = self.generate(prompt, on_token=on_token, should_stop=should_stop)
            if should_stop is not None and should_stop():
                raise CancelledError("explanation stopped on request")
            answers.append(text)
            tokens += count
            explanation = parse_explanation(text)
            if explanation is not None:
                result = ExplainResult(
                    explanation=explanation,
                    source=self.source,
                    raw_text=text,
                    tokens=tokens,
                    seconds=time.perf_counter() - started,
                    attempts=attempt,
                )
                break
        if result is None:
            result = template_result(
                request,
                fallback=True,
                raw_text="\n---\n".join(answers),
                tokens=tokens,
                seconds=time.perf_counter() - started,
                attempts=len(answers),
            )
        self.cache.put(key, result.to_record())
        return result

    def generate(
        self,
        prompt: Prompt,
        *,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> tuple[str, int]:
        """Run the model greedily on ``prompt``; returns the new text and its token count."""
        import torch

        processor, model = self.loaded.processor, self.loaded.model
        text = processor.apply_chat_template(
            prompt.messages, add_generation_prompt=True, tokenize=False
        )
        inputs = processor(text=[text], images=prompt.images or None, return_tensors="pt")
        inputs = inputs.to(self.loaded.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        extra: dict[str, Any] = {}
        if on_token is not None:
            extra["streamer"] = _streamer(processor.tokenizer, on_token)
        if should_stop is not None:
            extra["stopping_criteria"] = _stop_when(should_stop)
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, **extra
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        decoded = processor.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return decoded, int(new_tokens.numel())
