"""The two TensorFlow/Keras baselines (TF-IDF + dense network, BiLSTM), exported to ONNX as servable model directories."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from training.data import Example, Splits, load_splits, resolve_real_tweets_dir
from training.evaluate import classification_report
from tweetmood.classifier import Classifier, sha256_file
from tweetmood.encoders import SequenceEncoder, TfidfEncoder
from tweetmood.normalize import NORMALIZATION_VERSION, normalize_tweet

INPUT_NAME = "inputs"
OUTPUT_NAME = "probabilities"
PARITY_TOLERANCE = 1e-5
# sklearn's default token pattern; written into vocab.json so TfidfEncoder tokenizes the same way.
TFIDF_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# normalize_tweet leaves single spaces between words, so whitespace splitting is the word tokenizer.
SEQUENCE_TOKEN_PATTERN = r"\S+"
OOV_ID, PAD_ID = 1, 0


class ParityError(RuntimeError):
    """The exported ONNX graph (or the served classifier) disagrees with the Keras model."""


@dataclass
class BaselineResult:
    """What one baseline run produced: the serving directory and its measurements."""

    name: str
    out_dir: Path
    test: dict
    val: dict
    train_time_s: float
    model_bytes: int
    params: int
    parity_max_abs_diff: float
    epochs_run: int
    config: dict = field(default_factory=dict)
    model: object = field(default=None, repr=False)  # the trained Keras model, for parity checks by callers

    def summary(self) -> dict:
        return {
            "name": self.name, "out_dir": str(self.out_dir),
            "test_accuracy": self.test["accuracy"], "test_macro_f1": self.test["macro_f1"],
            "val_accuracy": self.val["accuracy"], "val_macro_f1": self.val["macro_f1"],
            "train_time_s": self.train_time_s, "model_bytes": self.model_bytes, "params": self.params,
            "parity_max_abs_diff": self.parity_max_abs_diff, "epochs_run": self.epochs_run,
        }


def configure_tensorflow(threads: int = 2) -> None:
    """Import TensorFlow quietly and pin its thread pools; the pools can only be set before first use."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already ran an op in this process; its pools are fixed now.


def _texts(examples: Sequence[Example]) -> list[str]:
    return [normalize_tweet(e.text) for e in examples]


def _class_weights(y: np.ndarray, n_labels: int) -> dict[int, float]:
    """sklearn's "balanced" weights: n_samples / (n_classes * count)."""
    counts = np.bincount(y, minlength=n_labels)
    return {i: float(len(y) / (n_labels * c)) if c else 0.0 for i, c in enumerate(counts)}


def _fit(model, x_train, y_train, x_val, y_val, *, epochs: int, batch_size: int, patience: int,
         class_weight: dict | None, verbose: int):
    import keras

    # Validation accuracy, not loss: these networks grow over-confident (val loss rises) while still
    # getting more validation examples right, and accuracy is what is reported.
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=batch_size,
                        class_weight=class_weight, callbacks=[stop], shuffle=True, verbose=verbose)
    elapsed = time.perf_counter() - start
    hist = {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()}
    best_epoch = int(np.argmax(hist["val_accuracy"])) + 1 if hist.get("val_accuracy") else len(hist.get("loss", []))
    return elapsed, hist, best_epoch


def export_onnx(model, path: Path, sample: np.ndarray) -> None:
    """Export with Keras 3 (tf2onnx underneath), then name the graph's input and output for the contract."""
    import onnx

    model.predict(sample[:1], verbose=0)  # Keras refuses to export a model that was never called
    model.export(str(path), format="onnx", verbose=False)
    graph = onnx.load(str(path))
    old_out = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = [OUTPUT_NAME if o == old_out else o for o in node.output]
        node.input[:] = [OUTPUT_NAME if i == old_out else i for i in node.input]
    graph.graph.output[0].name = OUTPUT_NAME
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    if graph.graph.input[0].name != INPUT_NAME:
        raise RuntimeError(f"{path}: exported input is {graph.graph.input[0].name!r}, expected {INPUT_NAME!r}")
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def _onnx_proba(path: Path, x: np.ndarray, threads: int, batch_size: int = 512) -> np.ndarray:
    import onnxruntime as ort

    from tweetmood.classifier import session_options

    session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + batch_size]})[0]
                           for i in range(0, len(x), batch_size)])


def _write_model_dir(out_dir: Path, *, name: str, labels: list[str], max_length: int, encoder_type: str) -> dict:
    model_path = out_dir / "model.onnx"
    sha = sha256_file(model_path)
    meta = {
        "name": name,
        "version": f"{name}-{sha[:8]}",
        "labels": list(labels),
        "max_length": int(max_length),
        "model_file": model_path.name,
        "sha256": sha,
        "normalization": NORMALIZATION_VERSION,
        "encoder": {"type": encoder_type, "vocab_file": "vocab.json"},
        "output": {"name": OUTPUT_NAME, "kind": "probabilities"},
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _model_card(meta: dict, summary: str, test: dict, size: int) -> str:
    return (f"# {meta['name']}\n\n{summary}\n\n"
            f"- version: `{meta['version']}`\n- labels: {', '.join(meta['labels'])}\n"
            f"- test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f} (n={test['n']})\n"
            f"- model.onnx: {size / 1e6:.1f} MB fp32, probabilities output `{OUTPUT_NAME}`\n"
            f"- encoder: `{meta['encoder']['type']}` over `vocab.json`, text normalized with `{meta['normalization']}`\n\n"
            "Built by `python -m training.baselines`; see metrics.json for per-class scores and the confusion matrix.\n")


def _finish(model, *, name: str, summary: str, splits: Splits, out_dir: Path, encoder_type: str, max_length: int,
            x_val: np.ndarray, x_test: np.ndarray, elapsed: float, hist: dict, best_epoch: int, config: dict,
            threads: int) -> BaselineResult:
    """Export, check parity twice (graph and served classifier), evaluate through the classifier, write metadata."""
    out_dir = Path(out_dir)
    model_path = out_dir / "model.onnx"
    export_onnx(model, model_path, x_test)
    meta = _write_model_dir(out_dir, name=name, labels=splits.labels, max_length=max_length, encoder_type=encoder_type)

    keras_test = model.predict(x_test, batch_size=512, verbose=0).astype(np.float32)
    graph_diff = float(np.abs(_onnx_proba(model_path, x_test, threads) - keras_test).max())
    classifier = Classifier.from_dir(out_dir, threads=threads)
    served_test = classifier.predict_proba([e.text for e in splits.test])
    served_diff = float(np.abs(served_test - keras_test).max())
    parity = {"onnx_vs_keras_max_abs_diff": graph_diff, "classifier_vs_keras_max_abs_diff": served_diff,
              "tolerance": PARITY_TOLERANCE, "n": len(x_test)}
    if max(graph_diff, served_diff) > PARITY_TOLERANCE:
        raise ParityError(f"{model_path}: ONNX differs from Keras by {max(graph_diff, served_diff):.3g} "
                          f"(> {PARITY_TOLERANCE}); parity={parity}")

    test = classification_report(splits.label_ids(splits.test), served_test.argmax(axis=1), splits.labels)
    served_val = classifier.predict_proba([e.text for e in splits.val]) if splits.val else np.zeros((0, len(splits.labels)))
    val = classification_report(splits.label_ids(splits.val), served_val.argmax(axis=1), splits.labels)
    size = model_path.stat().st_size
    params = int(model.count_params())
    metrics = {
        "model": name, "version": meta["version"], "split": "test", "test": test, "val": val,
        "train_time_s": round(elapsed, 1), "epochs_run": len(hist.get("loss", [])), "best_epoch": best_epoch,
        "device": f"cpu ({threads} TensorFlow threads, {platform.machine()}, {platform.processor() or 'unknown cpu'})",
        "model_bytes": size, "params": params, "parity": parity, "config": config, "history": hist,
        "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(_model_card(meta, summary, test, size), encoding="utf-8")
    return BaselineResult(name=name, out_dir=out_dir, test=test, val=val, train_time_s=round(elapsed, 1),
                          model_bytes=size, params=params, parity_max_abs_diff=max(graph_diff, served_diff),
                          epochs_run=metrics["epochs_run"], config=config, model=model)


def fit_tfidf_vocab(texts: Sequence[str], *, max_features: int | None, min_df: int = 1, sublinear_tf: bool = False,
                    stop_words: str | None = None) -> dict:
    """Fit sklearn's TfidfVectorizer on normalized texts; return the vocab.json that TfidfEncoder reads."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=TFIDF_TOKEN_PATTERN, ngram_range=(1, 1),
                                 max_features=max_features, min_df=min_df, sublinear_tf=sublinear_tf,
                                 stop_words=stop_words, norm="l2", dtype=np.float32)
    vectorizer.fit(texts)
    return {
        "vocabulary": {token: int(i) for token, i in sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])},
        "idf": [float(v) for v in vectorizer.idf_],
        "ngram_range": [1, 1],
        "sublinear_tf": sublinear_tf,
        "norm": "l2",
        "lowercase": True,
        "token_pattern": TFIDF_TOKEN_PATTERN,
    }


def build_dnn(n_features: int, n_labels: int, hidden: Sequence[int], dropout: float, learning_rate: float):
    """Dense network over TF-IDF features, softmax output (the original notebook's 4096-2048-1024-64 shape by default)."""
    import keras

    inputs = keras.Input((n_features,), dtype="float32", name=INPUT_NAME)
    x = inputs
    for width in hidden:
        x = keras.layers.Dense(width, activation="relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_labels, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="tfidf_dnn")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train_dnn(splits: Splits, out_dir: str | Path, *, seed: int = 13, epochs: int = 20, max_features: int | None = 5000,
              min_df: int = 1, sublinear_tf: bool = True, stop_words: str | None = None,
              hidden: Sequence[int] = (4096, 2048, 1024, 64), dropout: float = 0.5, class_weight: bool = False,
              learning_rate: float = 5e-4, batch_size: int = 128, patience: int = 2, threads: int = 2,
              verbose: int = 0) -> BaselineResult:
    """TF-IDF (vocabulary and idf from sklearn, features from the serving TfidfEncoder) + dense network -> ONNX dir."""
    configure_tensorflow(threads)
    import keras

    keras.utils.set_random_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_texts = _texts(splits.train)
    vocab = fit_tfidf_vocab(train_texts, max_features=max_features, min_df=min_df, sublinear_tf=sublinear_tf,
                            stop_words=stop_words)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    encoder = TfidfEncoder(out_dir / "vocab.json", input_name=INPUT_NAME)
    x_train, x_val, x_test = (encoder.transform(_texts(part)) for part in (splits.train, splits.val, splits.test))
    y_train, y_val = (np.asarray(splits.label_ids(part)) for part in (splits.train, splits.val))
    n_labels = len(splits.labels)

    model = build_dnn(x_train.shape[1], n_labels, hidden, dropout, learning_rate)
    weights = _class_weights(y_train, n_labels) if class_weight else None
    elapsed, hist, best_epoch = _fit(model, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=batch_size,
                                     patience=patience, class_weight=weights, verbose=verbose)
    config = {"seed": seed, "epochs": epochs, "max_features": max_features, "n_features": int(x_train.shape[1]),
              "min_df": min_df, "sublinear_tf": sublinear_tf, "stop_words": stop_words, "hidden": list(hidden),
              "dropout": dropout, "class_weight": class_weight, "learning_rate": learning_rate,
              "batch_size": batch_size, "patience": patience}
    return _finish(model, name="tweetmood-tfidf-dnn", summary="TF-IDF features + dense network (Keras), exported to ONNX.",
                   # A bag of words has no length limit; 64 keeps length-based batching alike across models.
                   splits=splits, out_dir=out_dir, encoder_type="tfidf", max_length=64,
                   x_val=x_val, x_test=x_test, elapsed=elapsed, hist=hist, best_epoch=best_epoch, config=config,
                   threads=threads)


def fit_word_index(texts: Sequence[str], *, num_words: int | None, max_length: int) -> dict:
    """Top-`num_words` words of the normalized texts, ids from 2 (0 pads, 1 is out-of-vocabulary), as vocab.json."""
    pattern = re.compile(SEQUENCE_TOKEN_PATTERN)
    counts = Counter(w for text in texts for w in pattern.findall(text.lower()))
    # Most frequent first; ties broken alphabetically so the index does not depend on input order.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:num_words]
    return {"word_index": {w: i + 2 for i, (w, _) in enumerate(ranked)}, "oov_id": OOV_ID, "pad_id": PAD_ID,
            "max_length": int(max_length), "token_pattern": SEQUENCE_TOKEN_PATTERN}


def build_bilstm(vocab_size: int, max_length: int, n_labels: int, embedding_dim: int, lstm_units: int,
                 dense_units: int, dropout: float, learning_rate: float):
    """Embedding (pad id 0 masked) + bidirectional LSTM + dense, softmax output."""
    import keras

    inputs = keras.Input((max_length,), dtype="int64", name=INPUT_NAME)
    x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True)(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(lstm_units))(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    if dense_units:
        x = keras.layers.Dense(dense_units, activation="relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_labels, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="bilstm")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train_bilstm(splits: Splits, out_dir: str | Path, *, seed: int = 13, epochs: int = 20, num_words: int | None = 10000,
                 max_length: int = 64, embedding_dim: int = 128, lstm_units: int = 64, dense_units: int = 64,
                 dropout: float = 0.3, class_weight: bool = False, learning_rate: float = 2e-3, batch_size: int = 64,
                 patience: int = 2, threads: int = 2, verbose: int = 0) -> BaselineResult:
    """Word index + Embedding/BiLSTM network (sequences from the serving SequenceEncoder) -> ONNX dir."""
    configure_tensorflow(threads)
    import keras

    keras.utils.set_random_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = fit_word_index(_texts(splits.train), num_words=num_words, max_length=max_length)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    encoder = SequenceEncoder(out_dir / "vocab.json", input_name=INPUT_NAME, dtype=np.int64)
    x_train, x_val, x_test = (encoder.transform(_texts(part)) for part in (splits.train, splits.val, splits.test))
    y_train, y_val = (np.asarray(splits.label_ids(part)) for part in (splits.train, splits.val))
    n_labels = len(splits.labels)
    vocab_size = len(vocab["word_index"]) + 2

    model = build_bilstm(vocab_size, max_length, n_labels, embedding_dim, lstm_units, dense_units, dropout, learning_rate)
    weights = _class_weights(y_train, n_labels) if class_weight else None
    elapsed, hist, best_epoch = _fit(model, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=batch_size,
                                     patience=patience, class_weight=weights, verbose=verbose)
    config = {"seed": seed, "epochs": epochs, "num_words": num_words, "vocab_size": vocab_size, "max_length": max_length,
              "embedding_dim": embedding_dim, "lstm_units": lstm_units, "dense_units": dense_units, "dropout": dropout,
              "class_weight": class_weight, "learning_rate": learning_rate, "batch_size": batch_size,
              "patience": patience}
    return _finish(model, name="tweetmood-bilstm", summary="Word embeddings + bidirectional LSTM (Keras), exported to ONNX.",
                   splits=splits, out_dir=out_dir, encoder_type="sequence", max_length=max_length,
                   x_val=x_val, x_test=x_test, elapsed=elapsed, hist=hist, best_epoch=best_epoch, config=config,
                   threads=threads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.baselines", description=__doc__)
    parser.add_argument("--data-dir", default=None, help="directory with train.* and test.* (default ../shared/data/emotion)")
    parser.add_argument("--output-dir", default="runs/baselines", help="model directories go to OUTPUT/tfidf-dnn and OUTPUT/bilstm")
    parser.add_argument("--which", choices=("dnn", "bilstm", "both"), default="both")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=20, help="upper bound; early stopping on validation loss ends sooner")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow and onnxruntime threads")
    parser.add_argument("--max-features", type=int, default=5000, help="TF-IDF vocabulary size (DNN input width)")
    parser.add_argument("--dropout", type=float, default=0.5, help="DNN dropout after each hidden layer")
    parser.add_argument("--stop-words", choices=("english",), default=None, help="drop sklearn's English stop words from TF-IDF")
    parser.add_argument("--class-weight", action="store_true", help="weight the loss by inverse class frequency")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (0 silent, 2 one line per epoch)")
    parser.add_argument("--real-tweets-dir", default="auto",
                        help="SemEval-2018 E-c directory to train on as well (auto = ../shared/data/semeval2018-ec "
                             "when present, none = off); multi-label rows train on their first label")
    args = parser.parse_args(argv)

    splits = load_splits(args.data_dir, seed=args.seed, real_tweets_dir=resolve_real_tweets_dir(args.real_tweets_dir, args.data_dir))
    out = Path(args.output_dir)
    results = []
    if args.which in ("dnn", "both"):
        results.append(train_dnn(splits, out / "tfidf-dnn", seed=args.seed, epochs=args.epochs, threads=args.threads,
                                 max_features=args.max_features, dropout=args.dropout, stop_words=args.stop_words,
                                 class_weight=args.class_weight, verbose=args.verbose))
    if args.which in ("bilstm", "both"):
        results.append(train_bilstm(splits, out / "bilstm", seed=args.seed, epochs=args.epochs, threads=args.threads,
                                    class_weight=args.class_weight, verbose=args.verbose))
    for result in results:
        print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
