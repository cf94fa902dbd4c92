"""Text encoders: turn texts into the named ONNX inputs a model directory's graph expects."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np


class Encoder(Protocol):
    """Maps a batch of (already normalized) texts to the graph's input feeds."""

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]: ...


def _ort_dtype(type_str: str) -> type:
    return {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}.get(type_str, np.int64)


class WordPieceEncoder:
    """Hugging Face `tokenizers` fast tokenizer; pads each batch to its longest row."""

    def __init__(self, tokenizer_file: Path, max_length: int, input_types: dict[str, str]):
        from tokenizers import Tokenizer

        self._tokenizer_file, self._max_length = tokenizer_file, max_length
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.enable_truncation(max_length=max_length)
        pad_id = self._tok.token_to_id("[PAD]")
        self._pad_id = 0 if pad_id is None else pad_id
        self._tok.enable_padding(pad_id=self._pad_id, pad_token="[PAD]")
        self._inputs = {name: _ort_dtype(t) for name, t in input_types.items()}

    @cached_property
    def _unpadded_tok(self):
        # A second tokenizer, not padding toggled on the shared one: one classifier may serve several threads
        # (the embedded stack runs handlers concurrently), and a tokenizer being reconfigured while another thread
        # encodes fails ("Already borrowed") or pads one batch half-way. Built on first use, off the cold start.
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self._tokenizer_file))
        tok.enable_truncation(max_length=self._max_length)
        tok.no_padding()
        return tok

    def _unpadded(self, texts: Sequence[str]) -> list:
        return self._unpadded_tok.encode_batch(list(texts))

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, what a batch holding it is padded to (the batching sort key)."""
        return [len(e.ids) for e in self._unpadded(texts)]

    def rows(self, texts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """One unpadded feed per text (batch of one), tokenized in a single batch call."""
        feeds = []
        for e in self._unpadded(texts):
            columns = {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
            feeds.append({name: np.asarray([columns[name]], dtype=dtype) for name, dtype in self._inputs.items()})
        return feeds

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encs = self._tok.encode_batch(list(texts))
        columns = {
            "input_ids": [e.ids for e in encs],
            "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs],
        }
        return {name: np.asarray(columns[name], dtype=dtype) for name, dtype in self._inputs.items()}


class TfidfEncoder:
    """TF-IDF features computed from a saved vocabulary and idf weights (sklearn semantics)."""

    def __init__(self, vocab_file: Path, input_name: str = "inputs"):
        spec = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        self.vocabulary: dict[str, int] = spec["vocabulary"]
        self.idf = np.asarray(spec["idf"], dtype=np.float32)
        self.ngram_range = tuple(spec.get("ngram_range", [1, 1]))
        self.sublinear_tf = bool(spec.get("sublinear_tf", False))
        self.norm = spec.get("norm", "l2")
        self.lowercase = bool(spec.get("lowercase", True))
        self.token_pattern = re.compile(spec.get("token_pattern", r"(?u)\b\w\w+\b"))
        self.input_name = input_name

    def _ngrams(self, text: str) -> list[str]:
        words = self.token_pattern.findall(text.lower() if self.lowercase else text)
        lo, hi = self.ngram_range
        grams = []
        for n in range(lo, hi + 1):
            grams.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        return grams

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.idf)), dtype=np.float32)
        for row, text in enumerate(texts):
            counts = Counter(g for g in self._ngrams(text) if g in self.vocabulary)
            for gram, count in counts.items():
                tf = 1.0 + math.log(count) if self.sublinear_tf else float(count)
                out[row, self.vocabulary[gram]] = tf
        out *= self.idf
        if self.norm == "l2":
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {self.input_name: self.transform(texts)}


class SequenceEncoder:
    """Word-index sequences for the BiLSTM baseline: out-of-vocabulary id, post-padding, truncation."""

    def __init__(self, vocab_file: Path, input_name: str = "inputs", dtype: type = np.int64):
        spec = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        self.word_index: dict[str, int] = spec["word_index"]
        self.oov_id = int(spec.get("oov_id", 1))
        self.pad_id = int(spec.get("pad_id", 0))
        self.max_length = int(spec["max_length"])
        self.token_pattern = re.compile(spec.get("token_pattern", r"\S+"))
        self.input_name = input_name
        self.dtype = dtype

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), self.max_length), self.pad_id, dtype=self.dtype)
        for row, text in enumerate(texts):
            ids = [self.word_index.get(w, self.oov_id) for w in self.token_pattern.findall(text.lower())]
            ids = ids[: self.max_length]
            out[row, : len(ids)] = ids
        return out

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {self.input_name: self.transform(texts)}


EncoderFactory = Callable[[Path, dict, int, dict[str, str]], Encoder]


def _wordpiece(model_dir: Path, spec: dict, max_length: int, input_types: dict[str, str]) -> Encoder:
    return WordPieceEncoder(model_dir / spec.get("tokenizer_file", "tokenizer.json"), max_length, input_types)


def _tfidf(model_dir: Path, spec: dict, max_length: int, input_types: dict[str, str]) -> Encoder:
    (name,) = input_types
    return TfidfEncoder(model_dir / spec.get("vocab_file", "vocab.json"), input_name=name)


def _sequence(model_dir: Path, spec: dict, max_length: int, input_types: dict[str, str]) -> Encoder:
    ((name, type_str),) = input_types.items()
    return SequenceEncoder(model_dir / spec.get("vocab_file", "vocab.json"), input_name=name, dtype=_ort_dtype(type_str))


ENCODERS: dict[str, EncoderFactory] = {"wordpiece": _wordpiece, "tfidf": _tfidf, "sequence": _sequence}


def build_encoder(model_dir: Path, spec: dict, max_length: int, input_types: dict[str, str]) -> Encoder:
    """Build the encoder that `model.json["encoder"]` names, fed to the graph inputs given."""
    kind = spec.get("type")
    if kind not in ENCODERS:
        raise ValueError(f"{model_dir}/model.json: unknown encoder type {kind!r}; expected one of {sorted(ENCODERS)}")
    return ENCODERS[kind](model_dir, spec, max_length, input_types)
