"""Fixtures for the export, report, publish and launcher tests: a tiny BERT checkpoint trained for a few steps on
cue words (so its labels have margins worth checking), its ONNX export and serving directories. Built locally."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("USE_TF", "0")

from training.data import Example, Splits  # noqa: E402

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
CUES = {"sadness": ["sad", "lonely", "crying"], "joy": ["happy", "glad", "great"], "love": ["love", "adore", "sweet"],
        "anger": ["angry", "furious", "mad"], "fear": ["scared", "afraid", "nervous"],
        "surprise": ["amazed", "shocked", "surprised"]}
FILLER = ["i", "feel", "so", "today", "the", "day", "was", "and", "really", "am", "about", "this", "work", "it"]


def make_examples(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = rng.sample(FILLER, rng.randint(2, 9)) + [rng.choice(CUES[label])]
        rng.shuffle(words)
        out.append(Example(text=" ".join(words), label=label, line=i + 1))
    return out


@pytest.fixture(scope="session")
def tiny_splits() -> Splits:
    return Splits(train=make_examples(240, 1), val=make_examples(24, 2), test=make_examples(120, 3), labels=LABELS)


def save_tokenizer(directory) -> int:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for ws in CUES.values() for w in ws} | set(FILLER) | set("abcdefghijklmnopqrstuvwxyz"))
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=64).save_pretrained(directory)
    return len(vocab)


def build_tiny_checkpoint(directory, splits: Splits, seed: int = 0, steps: int = 60):
    """A 2-layer, hidden-32 BERT classifier trained `steps` Adam steps on `splits.train` (0 steps: random)."""
    import json

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    vocab_size = save_tokenizer(directory)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(splits.labels),
                        id2label=dict(enumerate(splits.labels)), label2id={l: i for i, l in enumerate(splits.labels)})
    model = BertForSequenceClassification(config)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    enc = tokenizer([e.text for e in splits.train], padding=True, return_tensors="pt")
    y = torch.tensor(splits.label_ids(splits.train))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(y), (32,))
        loss = model(**{k: v[idx] for k, v in enc.items()}, labels=y[idx]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(directory)
    (directory / "tweetmood_training.json").write_text(json.dumps(
        {"preprocess": "normalize", "normalization": "tweet-v1", "max_length": 64, "labels": splits.labels}))
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_splits):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"), tiny_splits)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_checkpoint):
    """(work dir, optimized fp32 graph) of the tiny checkpoint."""
    from training.export import export_onnx

    work = tmp_path_factory.mktemp("tiny-export")
    return work, export_onnx(tiny_checkpoint, work)


@pytest.fixture(scope="session")
def tiny_serving(tmp_path_factory, tiny_checkpoint, tiny_export, tiny_splits):
    """quantization -> serving directory, built on first use."""
    from training.export import export_serving_model

    work, fp32 = tiny_export
    built = {}

    def get(quantization: str):
        if quantization not in built:
            built[quantization] = export_serving_model(
                tiny_checkpoint, work, tmp_path_factory.mktemp(f"serving-{quantization}"), LABELS, 64, "tiny-bert",
                quantization, [e.text for e in tiny_splits.train[:128]], fp32_graph=fp32)
        return built[quantization]

    return get
