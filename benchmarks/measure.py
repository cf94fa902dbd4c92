"""Measure one model in a fresh process: cold start, tweets/s, batch latency, peak RSS, accuracy.

Run by benchmarks.run as `python -m benchmarks.measure KIND --threads N ...`; prints one JSON line.
The parent passes its spawn time in BENCH_T0 so cold start counts interpreter start and imports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

T0 = float(os.environ.get("BENCH_T0", time.time()))


def peak_rss_mb() -> float:
    """This process's own peak resident memory. VmHWM belongs to the current image; ru_maxrss would also count
    the parent's memory copied at fork, before exec (a large parent, e.g. pytest with torch, inflates it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_test(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip():
            text, _, label = raw.rpartition(";")
            texts.append(text)
            labels.append(label)
    return texts, labels


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _timed(predict, texts: list[str], batch_size: int, order: np.ndarray) -> tuple[np.ndarray, list[float], float]:
    """Run `predict` over `texts` in `order`-sorted batches; returns probs in input order, batch latencies, total."""
    probs = [None] * len(texts)
    latencies = []
    start = time.perf_counter()
    for sl in _batches(len(texts), batch_size):
        idx = order[sl]
        t = time.perf_counter()
        out = predict([texts[i] for i in idx])
        latencies.append(time.perf_counter() - t)
        for row, i in zip(out, idx):
            probs[i] = row
    return np.asarray(probs), latencies, time.perf_counter() - start


def _core(model_dir: str, threads: int):
    from tweetmood.classifier import Classifier

    clf = Classifier.from_dir(model_dir, threads=threads)
    return clf.predict_proba, clf.labels, clf.lengths  # the sort key the core's batching uses


def _torch_pipeline(model_dir: str, threads: int):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=-1, top_k=None,
                    truncation=True, max_length=64)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    from tweetmood.normalize import normalize_tweet

    def predict(texts):
        out = pipe([normalize_tweet(t) for t in texts], batch_size=len(texts))
        return [[{d["label"]: d["score"] for d in row}[label] for label in labels] for row in out]

    def lengths(texts):  # the same token counts the core sorts by, from this model's own tokenizer
        return [len(ids) for ids in tok([normalize_tweet(t) for t in texts], truncation=True, max_length=64)["input_ids"]]

    return predict, labels, lengths


def _original(tokenizer_file: str, threads: int):
    """The original notebook's shape: DistilBERT-base-multilingual-cased sized, fp32, every input padded to 100."""
    import torch
    from tokenizers import Tokenizer
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=119547, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                              max_position_embeddings=512, num_labels=6)
    model = DistilBertForSequenceClassification(config).eval()
    tok = Tokenizer.from_file(tokenizer_file)
    tok.enable_truncation(max_length=100)
    tok.enable_padding(length=100)

    @torch.inference_mode()
    def predict(texts):
        encs = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encs])
        mask = torch.tensor([e.attention_mask for e in encs])
        return torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1).numpy()

    return predict, None, None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["core", "torch", "original"])
    p.add_argument("--model", required=True, help="model dir (core/torch) or tokenizer.json (original)")
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=0, help="score only the first N test tweets")
    p.add_argument("--file-order", action="store_true",
                   help="batches in file order, as a plain pipeline call makes them (default: length-sorted)")
    args = p.parse_args(argv)

    texts, gold = _read_test(args.test)
    if args.limit:
        texts, gold = texts[: args.limit], gold[: args.limit]
    factory = {"core": _core, "torch": _torch_pipeline, "original": _original}[args.kind]
    predict, labels, lengths = factory(args.model, args.threads)
    predict(texts[:1])
    cold_start_s = time.time() - T0

    # Batches sorted by token count where the path pads to the longest row (the core sorts the same way inside its
    # window); the original pads to 100 anyway.
    sort = lengths and not args.file_order
    order = np.argsort(lengths(texts), kind="stable") if sort else np.arange(len(texts))
    _timed(predict, texts[: args.batch_size * 2], args.batch_size, np.arange(min(len(texts), args.batch_size * 2)))
    probs, latencies, total = _timed(predict, texts, args.batch_size, order)
    accuracy = None
    if labels is not None:
        pred = [labels[i] for i in probs.argmax(axis=1)]
        accuracy = float(np.mean([a == b for a, b in zip(pred, gold)]))
    result = {
        "kind": args.kind,
        "threads": args.threads,
        "n": len(texts),
        "tweets_per_s": len(texts) / total,
        "batch_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "batch_p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "cold_start_s": cold_start_s,
        "peak_rss_mb": peak_rss_mb(),
        "accuracy": accuracy,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
