"""A tiny random model directory for tests and the demo, built locally without torch (needs `onnx`)."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Sequence

import numpy as np

from tweetmood.classifier import sha256_file

EMOTIONS = ("sadness", "joy", "love", "anger", "fear", "surprise")

# Enough whole words that typical tweets are not all [UNK]; the rest falls back to letters.
_WORDS = """
i im me my you your we they he she it is am are was were be been not no dont cant didnt so very really just
the a an and or but to of in on at for with this that what when why how all about today tonight day night
feel feeling felt love loved lovely hate hated happy sad angry mad scared afraid fear surprised wow omg
good great bad awful terrible amazing beautiful sweet cute lonely hurt miss missed excited nervous anxious
worried shocked upset furious calm proud glad sorry thanks thank please lol haha ugh yay best worst ever
never again still home work school friends family mom dad baby game weather coffee rain sun monday weekend
""".split()
_SUFFIXES = ("##s", "##ed", "##ing", "##ly", "##er", "##est", "##y")
_EMOJI = ("😀", "😂", "😍", "😭", "😡", "😱", "😮", "❤", "🎉", "🙏")


def _vocab() -> list[str]:
    chars = list(string.ascii_lowercase + string.digits)
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *_SUFFIXES, *_WORDS, *_EMOJI]


def build_tokenizer():
    """A BERT-style WordPiece tokenizer (lower-cased) over a small fixed vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(_vocab()))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def _graph(vocab_size: int, n_labels: int, hidden: int, seed: int):
    """Embeddings → two tanh layers → masked mean pool → logits: a 2-layer toy BERT-shaped graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], scale: float = 1.0):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    f32 = lambda name, arr: numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)  # noqa: E731
    inits = [
        init("word_emb", (vocab_size, hidden)),
        init("type_emb", (2, hidden), 0.1),
        init("w1", (hidden, hidden), hidden**-0.5),
        init("b1", (hidden,), 0.1),
        init("w2", (hidden, hidden), hidden**-0.5),
        init("b2", (hidden,), 0.1),
        init("w_out", (hidden, n_labels), 2.0),
        init("b_out", (n_labels,), 0.1),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
        f32("one", [1.0]),
    ]
    n = helper.make_node
    nodes = [
        n("Gather", ["word_emb", "input_ids"], ["tok"]),
        n("Gather", ["type_emb", "token_type_ids"], ["typ"]),
        n("Add", ["tok", "typ"], ["x0"]),
        n("MatMul", ["x0", "w1"], ["h1"]),
        n("Add", ["h1", "b1"], ["h1b"]),
        n("Tanh", ["h1b"], ["x1"]),
        n("MatMul", ["x1", "w2"], ["h2"]),
        n("Add", ["h2", "b2"], ["h2b"]),
        n("Tanh", ["h2b"], ["x2"]),
        n("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        n("Unsqueeze", ["maskf", "last_axis"], ["mask3"]),
        n("Mul", ["x2", "mask3"], ["masked"]),
        n("ReduceSum", ["masked", "seq_axis"], ["summed"], keepdims=0),
        n("ReduceSum", ["mask3", "seq_axis"], ["count"], keepdims=0),
        n("Max", ["count", "one"], ["count1"]),
        n("Div", ["summed", "count1"], ["pooled"]),
        n("MatMul", ["pooled", "w_out"], ["lo"]),
        n("Add", ["lo", "b_out"], ["logits"]),
    ]
    ids = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])  # noqa: E731
    graph = helper.make_graph(
        nodes,
        "tiny_emotion",
        [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tweetmood.testing")
    model.ir_version = 8  # readable by any onnxruntime the runtime layer may pin
    return model


def build_tiny_model(
    model_dir: str | Path,
    labels: Sequence[str] = EMOTIONS,
    encoder: str = "wordpiece",
    *,
    hidden: int = 32,
    max_length: int = 64,
    seed: int = 0,
    version: str = "tiny-random-test",
) -> Path:
    """Write a complete, untrained model directory (model.onnx, tokenizer.json, model.json).

    Deterministic for a given seed, so a committed copy can be checked against a rebuild.
    """
    import onnx

    if encoder != "wordpiece":
        raise ValueError(f"build_tiny_model only builds wordpiece models, not {encoder!r}")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save(str(model_dir / "tokenizer.json"))
    onnx.save_model(_graph(tokenizer.get_vocab_size(), len(labels), hidden, seed), str(model_dir / "model.onnx"))
    meta = {
        "name": "tweetmood-tiny-random",
        "version": version,
        "labels": list(labels),
        "max_length": max_length,
        "model_file": "model.onnx",
        "sha256": sha256_file(model_dir / "model.onnx"),
        "normalization": "tweet-v1",
        "encoder": {"type": "wordpiece", "tokenizer_file": "tokenizer.json"},
        "output": {"name": "logits", "kind": "logits"},
        "quantization": "none",
        "created": "2026-01-01T00:00:00Z",
        "note": "random weights for tests and the demo; its labels mean nothing",
    }
    (model_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return model_dir
