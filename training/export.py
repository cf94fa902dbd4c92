"""ONNX export of a fine-tuned checkpoint, graph optimization, int8 quantization, the serving directory and the parity gate."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from tweetmood.classifier import Classifier, sha256_file
from tweetmood.encoders import WordPieceEncoder
from tweetmood.normalize import NORMALIZATION_VERSION, NORMALIZERS

log = logging.getLogger(__name__)

# The exporter imports transformers, which would otherwise import TensorFlow too (seconds, and a second framework).
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TRANSFORMERS_NO_TF", "1")

# model.json "quantization" value -> what it is. Dynamic int8 computes activation scales per call, so its
# serving directory says `"execution": "per-row"` and the classifier runs one tweet per call: scores then do not
# depend on the batch. int8-static-fused fixes those scales at calibration and keeps the fused uint8 x int8 kernels,
# so it is batch-independent by construction and served in batches (docs/training.md, "Quantization").
QUANTIZATIONS = {
    "fp32": "no quantization: the optimized float32 graph",
    "int8-static": "static int8, QDQ format: per-channel int8 weights, int8 activations calibrated (MinMax) on training "
                   "texts, int8 embedding rows",
    "int8-static-qop": "static int8, QOperator format (QLinearMatMul): as int8-static with fused quantized operators",
    "int8-weight-only": "int8 per-channel weights and embedding rows, float32 activations",
    "int8-dynamic": "dynamic int8: per-channel int8 weights, activation scales computed per call (served one tweet per call)",
    "int8-dynamic-embeddings": "int8-dynamic plus int8 embedding tables (Gather)",
    "int8-static-fused": "int8-dynamic-embeddings with every activation scale fixed by calibration (MinMax over training "
                         "texts, one tweet at a time): the same fused uint8 x int8 MatMulIntegerToFloat kernels, "
                         "batch-independent, served in batches",
}
DEFAULT_QUANTIZATION = "int8-static-fused"
OPTIMIZED_ATOL = 1e-4
CLS_ONLY_GRAPH = "model-cls-only.onnx"
BATCH_INDEPENDENCE_ATOL = 1e-4
CALIBRATION_TEXTS = 512
"""Training texts the static quantizations take their activation ranges from (the first of the training split)."""


class ExportError(RuntimeError):
    """The export, the optimization or the quantization produced a graph that does not match its source."""


class ParityError(RuntimeError):
    """The quantized serving model disagrees with the float32 PyTorch model beyond the gate."""


@dataclass
class ParityReport:
    n: int
    agreement: float
    accuracy_torch: float
    accuracy_onnx: float
    accuracy_delta: float
    max_logit_diff: float
    max_prob_diff: float
    passed: bool

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _graph_feeds(model_path: Path, tokenizer_file: Path, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    encoder = WordPieceEncoder(tokenizer_file, max_length, {i.name: i.type for i in session.get_inputs()})
    return encoder(texts)


def run_graph(model_path: str | Path, feeds: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    """Logits of an ONNX graph for prepared feeds (inputs it does not take are dropped)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def export_onnx(checkpoint_dir: str | Path, out_dir: str | Path, opset: int = 18, check_texts: Sequence[str] | None = None,
                fuse_attention: bool = True) -> Path:
    """Export an HF sequence-classification checkpoint (dynamic batch and sequence axes) to
    `out_dir/exported/model.onnx`, then fuse it with onnxruntime's BERT optimizer (attention, LayerNorm, GELU,
    embeddings) into `out_dir/model-fp32.onnx`, which is returned after checking that its logits match the plain
    export within 1e-4. For BERT-style classifiers it also writes `out_dir/model-cls-only.onnx` (the last layer for
    [CLS] only, `training.cls_graph`), checked the same way. Quantize those unfused graphs (`quantization_source`),
    not the fused one: see `quantize`."""
    from optimum.exporters.onnx import main_export

    from training.cls_graph import export_cls_only

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    raw_dir = out_dir / "exported"
    main_export(str(checkpoint_dir), str(raw_dir), task="text-classification", opset=opset, local_files_only=True,
                do_validation=False, library_name="transformers")
    raw_path = raw_dir / "model.onnx"
    optimized = optimize_graph(raw_path, out_dir / "model-fp32.onnx", fuse_attention=fuse_attention)
    texts = list(check_texts or _default_check_texts())
    feeds = _graph_feeds(raw_path, raw_dir / "tokenizer.json", texts, 128)
    diff = float(np.abs(run_graph(raw_path, feeds) - run_graph(optimized, feeds)).max())
    if diff > OPTIMIZED_ATOL:
        raise ExportError(f"{optimized}: the optimized graph's logits differ from the export by {diff:.2e} "
                          f"(> {OPTIMIZED_ATOL}); export with fuse_attention=False or report the fusion as a bug")
    report = {"optimized_max_abs_diff": diff, "opset": opset, "fuse_attention": fuse_attention}
    (out_dir / CLS_ONLY_GRAPH).unlink(missing_ok=True)
    cls_only = export_cls_only(checkpoint_dir, out_dir / CLS_ONLY_GRAPH, opset)
    if cls_only is None:
        log.info("%s: not a BERT-style classifier with a pooler; int8 is quantized from the full graph", checkpoint_dir)
    else:
        cls_diff = float(np.abs(run_graph(raw_path, feeds) - run_graph(cls_only, feeds)).max())
        if cls_diff > OPTIMIZED_ATOL:
            raise ExportError(f"{cls_only}: the CLS-only graph's logits differ from the export by {cls_diff:.2e} "
                              f"(> {OPTIMIZED_ATOL}); report it as a bug in training/cls_graph.py")
        report["cls_only_max_abs_diff"] = cls_diff
    (out_dir / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    return optimized


def plain_export(out_dir: str | Path) -> Path:
    """The unfused float32 graph `export_onnx` wrote under `out_dir`: the input to `quantize`."""
    return Path(out_dir) / "exported" / "model.onnx"


def _default_check_texts() -> list[str]:
    return ["i feel so happy today", "i am scared and alone", "im feeling rather rotten so im not very ambitious right now",
            "i didnt feel humiliated", "i love you", "what a surprise that was", "i feel angry about the whole thing and "
            "i cannot say why but it keeps coming back whenever i think of it"]


def optimize_graph(onnx_path: str | Path, out_path: str | Path, fuse_attention: bool = True) -> Path:
    """onnxruntime's transformer optimizer for BERT: LayerNorm, GELU, embedding (and optionally attention) fusion."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = fuse_attention
    options.enable_embed_layer_norm = fuse_attention  # EmbedLayerNormalization needs the fused Attention's mask
    model = optimize_model(str(onnx_path), model_type="bert", optimization_options=options, opt_level=0)
    out_path = Path(out_path)
    model.save_model_to_file(str(out_path))
    return out_path


def op_counts(onnx_path: str | Path) -> Counter:
    """Node types in a graph: how many MatMuls were quantized, which fused operators are there."""
    import onnx

    return Counter(node.op_type for node in onnx.load(str(onnx_path), load_external_data=False).graph.node)


class _CalibrationReader:
    """Feeds a few hundred normalized training texts, a batch at a time, to the static calibrator."""

    def __init__(self, model_path: Path, tokenizer_file: Path, texts: Sequence[str], max_length: int, batch_size: int = 32):
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        encoder = WordPieceEncoder(tokenizer_file, max_length, {i.name: i.type for i in session.get_inputs()})
        normalize = NORMALIZERS[checkpoint_normalization(tokenizer_file.parent)]
        prepared = [normalize(t) for t in texts]
        self._batches = iter([encoder(prepared[i : i + batch_size]) for i in range(0, len(prepared), batch_size)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # the MinMax calibrator reads once; nothing to rewind
        pass


def quantize(onnx_path: str | Path, out_path: str | Path, method: str = DEFAULT_QUANTIZATION,
             calibration_texts: Sequence[str] = (), tokenizer_file: str | Path | None = None, max_length: int = 64) -> Path:
    """Write `onnx_path` quantized with `method` (a key of QUANTIZATIONS) to `out_path`.

    Pass the plain export: onnx's shape inference does not know the fused contrib operators (SkipLayerNormalization,
    BiasGelu), so the quantizer would skip the tensors around them; onnxruntime applies those fusions, and folds the
    QDQ pairs into QLinearMatMul, when it loads the quantized graph."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {method!r}; expected one of {sorted(QUANTIZATIONS)}")
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if method == "fp32":
        shutil.copyfile(onnx_path, out_path)
        return out_path
    if method == "int8-weight-only":
        return _quantize_embeddings(_quantize_weights_only(onnx_path, out_path))
    if method.startswith("int8-static") and (not calibration_texts or tokenizer_file is None):
        raise ValueError(f"{method} needs calibration_texts and tokenizer_file: pass a few hundred training texts")
    if method.startswith("int8-dynamic") or method == "int8-static-fused":
        ops = ["MatMul", "Attention"] + ([] if method == "int8-dynamic" else ["Gather"])
        # 7-bit weights (reduce_range): on CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) onnxruntime's
        # u8 x s8 kernel adds pairs of products in int16, which full-range weights overflow; measured on an AVX2-only
        # EPYC, the tiny test model agreed with float32 on 15-39% of tweets without it.
        quantize_dynamic(onnx_path, out_path, op_types_to_quantize=ops, per_channel=True, reduce_range=True,
                         weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
        if method == "int8-static-fused":
            fix_activation_scales(out_path, Path(tokenizer_file), calibration_texts, max_length)
        return out_path
    prepped = out_path.with_suffix(".prep.onnx")
    quant_pre_process(str(onnx_path), str(prepped), skip_optimization=True, skip_symbolic_shape=True)
    reader = _CalibrationReader(prepped, Path(tokenizer_file), calibration_texts, max_length)
    quantize_static(prepped, out_path, reader,
                    quant_format=QuantFormat.QOperator if method == "int8-static-qop" else QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    # All MatMuls, attention products included: leaving those float leaves DequantizeLinear ->
                    # MatMul pairs that onnxruntime cannot fuse, which ran slower than float32.
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    prepped.unlink(missing_ok=True)
    if method == "int8-static":
        _quantize_embeddings(out_path)
    return out_path


def uint8_qparams(low: float, high: float) -> tuple[float, int]:
    """uint8 scale and zero point for a tensor seen within [low, high] (the range is widened to hold 0, so zero padding
    is exact): what calibration fixes for every quantized input, and what training.qat rounds to."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / 255.0
    return scale, int(np.clip(round(-low / scale), 0, 255))


def fix_activation_scales(onnx_path: Path, tokenizer_file: Path, calibration_texts: Sequence[str], max_length: int) -> Path:
    """Turn a dynamic int8 graph (in place) into one whose activation scales are constants: run it on the calibration
    texts one tweet per call (no padding in the ranges), keep each quantized tensor's widest range (MinMax), replace
    every DynamicQuantizeLinear by a QuantizeLinear with that scale, and write each MatMulInteger -> Cast -> Mul
    (-> Add bias) chain as one MatMulIntegerToFloat.

    That last step is ours because onnxruntime's own MatMulIntegerToFloat fusion looks for the Mul that multiplies the
    two scales, which constant folding has already removed once the activation scale is a constant: left to
    onnxruntime the graph runs unfused MatMulInteger, Cast and Mul, no faster than the dynamic graph."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_path))
    dynamic = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    if not dynamic:
        return onnx_path
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for node in dynamic:
        probe.graph.output.extend([helper.make_tensor_value_info(node.output[1], TensorProto.FLOAT, []),
                                   helper.make_tensor_value_info(node.output[2], TensorProto.UINT8, [])])
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    encoder = WordPieceEncoder(tokenizer_file, max_length, {i.name: i.type for i in session.get_inputs()})
    wanted = [o for node in dynamic for o in node.output[1:3]]
    low = np.zeros(len(dynamic))
    high = np.zeros(len(dynamic))
    # The tokenizer sits in the checkpoint directory, which says how its model reads text.
    normalize = NORMALIZERS[checkpoint_normalization(tokenizer_file.parent)]
    for feed in encoder.rows([normalize(t) for t in calibration_texts]):
        got = session.run(wanted, feed)
        scale, zero = np.array(got[0::2], dtype=np.float64), np.array(got[1::2], dtype=np.float64)
        low, high = np.minimum(low, -zero * scale), np.maximum(high, (255 - zero) * scale)

    for node, lo, hi in zip(dynamic, low, high):
        scale, zero = uint8_qparams(lo, hi)
        model.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), node.output[1]),
                                        numpy_helper.from_array(np.array(zero, np.uint8), node.output[2])])
    static = {id(n): helper.make_node("QuantizeLinear", [n.input[0], n.output[1], n.output[2]], [n.output[0]],
                                      name=f"{n.name}_static") for n in dynamic}
    nodes = [static.get(id(n), n) for n in model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(_fuse_matmul_integer_to_float(nodes, {i.name: list(i.dims) for i in model.graph.initializer}))
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(onnx_path))
    return onnx_path


def _fuse_matmul_integer_to_float(nodes: list, constants: dict[str, list[int]]) -> list:
    """QuantizeLinear(a) -> MatMulInteger(a, b) -> Cast -> Mul(a_scale * b_scale) [-> Add(bias)] with constant scales:
    the last four as one node;
    `constants` maps initializer names to their shapes (a bias is folded in only when it is one value per column)."""
    from onnx import helper

    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def only(name: str, op: str):
        found = consumers.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    replaced, dropped = {}, set()
    for mm in (n for n in nodes if n.op_type == "MatMulInteger"):
        cast = only(mm.output[0], "Cast")
        mul = cast and only(cast.output[0], "Mul")
        scales = mul and producer.get(mul.input[1])
        quant = producer.get(mm.input[0])
        if scales is None or scales.op_type != "Mul" or not all(i in constants for i in scales.input) \
                or len(consumers.get(scales.output[0], [])) != 1 or quant is None or quant.op_type != "QuantizeLinear" \
                or quant.input[1] not in scales.input:
            continue
        a_scale = quant.input[1]  # the activation's (one value); the other factor is the weight's (one per column)
        b_scale = next(i for i in scales.input if i != a_scale)
        chain, out, bias = [mm, cast, mul, scales], mul.output[0], ""
        add = only(out, "Add")
        columns = constants.get(mm.input[1], [0])[-1]
        if add is not None and sum(constants.get(i) == [columns] for i in add.input) == 1:
            chain, out, bias = chain + [add], add.output[0], next(i for i in add.input if constants.get(i) == [columns])
        a_zero = mm.input[2] if len(mm.input) > 2 else ""
        b_zero = mm.input[3] if len(mm.input) > 3 else ""
        replaced[id(mm)] = helper.make_node("MatMulIntegerToFloat", [mm.input[0], mm.input[1], a_scale, b_scale, a_zero,
                                                                     b_zero, bias], [out], name=f"{mm.name}_fused",
                                            domain="com.microsoft")
        dropped.update(id(n) for n in chain)
    return [replaced.get(id(n), n) for n in nodes if id(n) in replaced or id(n) not in dropped]


def _quantize_embeddings(onnx_path: Path, min_rows: int = 1024) -> Path:
    """int8 embedding tables with one scale per row: Gather the int8 rows and their scales, multiply. Only the
    gathered rows are dequantized, and nothing depends on the batch. Small tables (positions, segments) stay float."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes = []
    for node in graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or len(table.dims) != 2 or table.dims[0] < min_rows or table.data_type != TensorProto.FLOAT:
            new_nodes.append(node)
            continue
        name, w = table.name, numpy_helper.to_array(table)
        scale = (np.maximum(np.abs(w).max(axis=1), 1e-12) / 127.0).astype(np.float32)
        graph.initializer.remove(table)
        graph.initializer.extend([numpy_helper.from_array(np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8), name + "_q"),
                                  numpy_helper.from_array(scale[:, None], name + "_row_scale")])
        ids, out, prefix = node.input[1], node.output[0], node.name or name
        new_nodes += [
            helper.make_node("Gather", [name + "_q", ids], [prefix + "_q_rows"], name=prefix + "_q", axis=0),
            helper.make_node("Gather", [name + "_row_scale", ids], [prefix + "_scales"], name=prefix + "_scales", axis=0),
            helper.make_node("Cast", [prefix + "_q_rows"], [prefix + "_rows"], name=prefix + "_cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [prefix + "_rows", prefix + "_scales"], [out], name=prefix + "_dequantize"),
        ]
    del graph.node[:]
    graph.node.extend(new_nodes)
    onnx.save(model, str(onnx_path))
    return onnx_path


def _quantize_weights_only(onnx_path: Path, out_path: Path) -> Path:
    """int8 per-output-channel MatMul weights with a DequantizeLinear in front: a quarter of the size, float compute,
    so scores are exactly as batch-independent as the float32 graph."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes, replaced = [], set()
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and node.input[1] not in replaced:
            name = node.input[1]
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            if w.ndim == 2:
                scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
                q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
                graph.initializer.remove(inits[name])
                graph.initializer.extend([numpy_helper.from_array(q, name + "_q"),
                                          numpy_helper.from_array(scale.astype(np.float32), name + "_scale"),
                                          numpy_helper.from_array(np.zeros_like(q[0]), name + "_zp")])
                new_nodes.append(helper.make_node("DequantizeLinear", [name + "_q", name + "_scale", name + "_zp"], [name],
                                                  axis=1, name=name + "_dequantize"))
                replaced.add(name)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    onnx.save(model, str(out_path))
    return out_path


def batch_independence(classifier: Classifier, texts: Sequence[str], batch_size: int = 64, seed: int = 0) -> float:
    """Largest change in any probability between scoring each text alone and scoring it in shuffled batches."""
    texts = list(texts)
    alone = np.concatenate([classifier.predict_proba([t]) for t in texts])
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    batched = np.zeros_like(alone)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batched[idx] = classifier.predict_proba([texts[i] for i in idx])
    return float(np.abs(alone - batched).max()) if texts else 0.0


def _serving_tokenizer(checkpoint_dir: Path, max_length: int):
    """The checkpoint's fast tokenizer with the truncation and padding the serving encoder applies."""
    from tokenizers import Tokenizer

    source = checkpoint_dir / "tokenizer.json"
    if not source.is_file():
        raise ExportError(f"{source} not found: save the fast tokenizer with the checkpoint (tokenizer.save_pretrained)")
    tok = Tokenizer.from_file(str(source))
    pad_id = tok.token_to_id("[PAD]")
    if pad_id is None:
        raise ExportError(f"{source} has no [PAD] token, which the serving encoder pads with; use a WordPiece (BERT) tokenizer")
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=pad_id, pad_token="[PAD]")
    return tok


def checkpoint_normalization(checkpoint_dir: str | Path) -> str:
    """The normalization a checkpoint was trained with (its tweetmood_training.json; older ones: tweet-v1)."""
    info = Path(checkpoint_dir) / "tweetmood_training.json"
    if not info.is_file():
        return NORMALIZATION_VERSION
    return json.loads(info.read_text(encoding="utf-8")).get("normalization", "tweet-v1")


def write_serving_dir(onnx_path: str | Path, checkpoint_dir: str | Path, out_dir: str | Path, labels: Sequence[str],
                      max_length: int, name: str, quantization: str, base_model: str | None = None,
                      card: dict | None = None, graph: str = "full") -> Path:
    """A model directory as docs/architecture.md defines it: model.onnx, tokenizer.json, model.json, README.md."""
    onnx_path, checkpoint_dir, out_dir = Path(onnx_path), Path(checkpoint_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, out_dir / "model.onnx")
    _serving_tokenizer(checkpoint_dir, max_length).save(str(out_dir / "tokenizer.json"))
    digest = sha256_file(out_dir / "model.onnx")
    if base_model is None:
        config = checkpoint_dir / "config.json"
        base_model = json.loads(config.read_text()).get("_name_or_path") if config.is_file() else None
    meta = {
        "name": name,
        "version": f"{name}-{digest[:8]}",
        "labels": list(labels),
        "max_length": int(max_length),
        "model_file": "model.onnx",
        "sha256": digest,
        "normalization": checkpoint_normalization(checkpoint_dir),
        "encoder": {"type": "wordpiece", "tokenizer_file": "tokenizer.json"},
        "output": {"name": "logits", "kind": "logits"},
        "quantization": quantization,
        # Dynamic int8 computes activation scales per call: scoring one tweet per call keeps a
        # tweet's scores independent of its neighbours, at the same fast int8 kernels.
        "execution": "per-row" if quantization.startswith("int8-dynamic") else "batched",
        # "cls-only-last-layer": the last encoder layer is computed for the [CLS] position only (training.cls_graph).
        "graph": graph,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "base_model": base_model or "unknown",
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_model_card(out_dir, card or {})
    return out_dir


DATA_CARD = (
    "- The \"Emotions dataset for NLP\" (dair-ai/emotion; Saravia et al., \"CARER: Contextualized Affect "
    "Representations for Emotion Recognition\", EMNLP 2018): 16,000 training tweets (a seeded, stratified 10% "
    "validation split carved out of them) and 2,000 test tweets, lower-cased, punctuation removed, one label each.\n\n"
    "- SemEval-2018 Task 1 \"Affect in Tweets\", E-c, English (Mohammad, Bravo-Marquez, Salameh, Kiritchenko, "
    "SemEval-2018): 6,838 real tweets labelled with every emotion annotators saw, out of eleven. Rows with exactly one "
    "of our six train as that label, rows with several as a target spread evenly over them, rows with none are left "
    "out; a seeded tenth of train is held out for model selection and calibration; dev (886 tweets) is only "
    "evaluated. Released by the task organisers for research use.")


def write_model_card(serving_dir: str | Path, card: dict) -> Path:
    """README.md for a serving directory from its model.json, its metrics.json (when written) and `card`."""
    serving_dir = Path(serving_dir)
    meta = json.loads((serving_dir / "model.json").read_text(encoding="utf-8"))
    metrics_path = serving_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}

    def pct(key: str, source: dict) -> str:
        return f"{source[key]:.4f}" if isinstance(source.get(key), (int, float)) else "not measured"

    raw = metrics.get("raw_test", {})
    parity = metrics.get("parity", {})
    training = card.get("training", {})
    lines = [
        f"# {meta['name']} ({meta['version']})", "",
        "Scores an English tweet with one of six emotions: " + ", ".join(meta["labels"]) + ".", "",
        "## Model", "",
        f"- base model: {meta.get('base_model', 'unknown')}, fine-tuned for sequence classification",
        f"- graph: `{meta['model_file']}` (ONNX, sha256 `{meta['sha256'][:16]}…`), quantization `{meta['quantization']}`: "
        f"{QUANTIZATIONS.get(meta['quantization'], '')}"
        + ("; the last encoder layer is computed for the [CLS] position only, the one the classifier reads (same "
           "logits within 1e-4, less work)" if meta.get("graph") == "cls-only-last-layer" else ""),
        f"- input: text normalized with `{meta['normalization']}` (tweetmood.normalize), WordPiece, at most {meta['max_length']} tokens",
        "", "## Data", "",
        card.get("data", DATA_CARD if "ec_dev" in metrics else DATA_CARD.split("\n\n")[0]),
        "", "## Training", "",
    ]
    lines += [f"- {k}: {v}" for k, v in training.items()] or ["- see metrics.json"]
    lines += [
        "", "## Evaluation (test.txt, this artifact through the serving code)", "",
        "| test set | accuracy | macro-F1 |", "|---|---|---|",
        f"| clean test.txt | {pct('accuracy', metrics)} | {pct('macro_f1', metrics)} |",
        f"| raw test (case, punctuation, emoji, URLs, @mentions restored) | {pct('accuracy', raw)} | {pct('macro_f1', raw)} |",
    ]
    if "ec_dev" in metrics:
        lines += [f"| real tweets: SemEval-2018 E-c dev, the {metrics['ec_dev'].get('n', 444)} rows with exactly one of "
                  f"the six | {pct('accuracy', metrics['ec_dev'])} | {pct('macro_f1', metrics['ec_dev'])} |"]
    mixed = metrics.get("ec_dev_mixed") or {}
    if mixed.get("n"):
        lines += ["", f"Tweets with two emotions at once (E-c dev, the {mixed['n']} rows with two or more of the six): "
                      f"the top label is one of theirs for {mixed['top1_in_labels']:.2%}"
                  + (f"; on the {mixed['n_two']} with exactly two, the top two labels are those two for "
                     f"{mixed['top2_are_labels']:.2%}" if mixed.get("n_two") else "") + "."]
    calibration = metrics.get("calibration")
    if calibration:
        eces = "; ".join(f"{name} {r['ece_before']:.3f} → {r['ece_after']:.3f}" for name, r in calibration.items()
                         if isinstance(r, dict) and "ece_before" in r)
        lines += ["", f"Calibration: scores are divided by a temperature of {calibration.get('temperature', 1):.3f} "
                      f"before the softmax, fitted after quantization on {calibration.get('fitted_on')}. Expected "
                      f"calibration error (15 bins), before → after: {eces}."]
    if parity:
        lines += ["", f"Parity with the float32 PyTorch model: {parity.get('agreement', 0):.2%} label agreement, "
                      f"accuracy delta {parity.get('accuracy_delta', 0):+.4f}, max logit difference {parity.get('max_logit_diff', 0):.3f}."]
    if "batch_independence_max_abs_diff" in metrics:
        lines += [f"Batch independence: a tweet's probabilities change by at most "
                  f"{metrics['batch_independence_max_abs_diff']:.1e} between scoring it alone and in a batch of 64."]
    lines += [
        "", "## Intended use and limits", "",
        "- Intended: aggregate emotion trends over batches of English tweets; research and education, as the data's licence allows.",
        "- One label per tweet from a fixed set of six; mixed or neutral tweets still get one of the six.",
        "- Raw tweets are normalized first (emoji and emoticons become words, links and @mentions are dropped, case "
        "and punctuation go); the emotion corpus is lower-cased without punctuation, so real tweets are the harder case.",
        "- Label semantics differ between the two data sets: the emotion corpus gives one label per tweet; E-c marks "
        "every emotion annotators saw in a real tweet (multi-label, eleven emotions). This model answers one of six; "
        "on a tweet with two emotions its score is spread over both, and the emotions E-c has but we do not "
        "(disgust, optimism, trust, …) are not recognised.",
        "- English only; sarcasm, negation and rare classes (surprise, love) are where it errs most (see the per-class scores in metrics.json).",
        "- Not for decisions about individuals.",
    ]
    path = serving_dir / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def torch_logits(checkpoint_dir: str | Path, texts: Sequence[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Logits of the float32 PyTorch checkpoint on normalized texts, as the reference for the parity gate."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint_dir), local_files_only=True).eval()
    normalize = NORMALIZERS[checkpoint_normalization(checkpoint_dir)]
    prepared = [normalize(t) for t in texts]
    out = []
    with torch.inference_mode():
        for i in range(0, len(prepared), batch_size):
            enc = tokenizer(prepared[i : i + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)


def serving_logits(classifier: Classifier, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Logits of a serving directory exactly as serving computes them (its encoder, session and `execution`)."""
    out = [classifier.outputs(list(texts[i: i + batch_size])) for i in range(0, len(texts), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(classifier.labels)), dtype=np.float32)


def check_parity(torch_checkpoint: str | Path, serving_dir: str | Path, texts: Sequence[str], labels: Sequence[str],
                 min_agreement: float = 0.99, max_accuracy_drop: float = 0.005, raise_on_failure: bool = True) -> ParityReport:
    """The gate between training and shipping: the serving model must agree with the float32 PyTorch model on at least
    `min_agreement` of `texts` and lose at most `max_accuracy_drop` accuracy against `labels` (true label names).
    Records the result under "parity" in the serving directory's metrics.json; raises ParityError when it fails."""
    serving_dir = Path(serving_dir)
    classifier = Classifier.from_dir(serving_dir)
    index = {label: i for i, label in enumerate(classifier.labels)}
    y = np.asarray([index[label] for label in labels])
    reference = torch_logits(torch_checkpoint, texts, classifier.max_length)
    served = serving_logits(classifier, list(texts))
    ref_pred, srv_pred = reference.argmax(1), served.argmax(1)

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    acc_torch, acc_onnx = float((ref_pred == y).mean()), float((srv_pred == y).mean())
    report = ParityReport(
        n=len(y), agreement=float((ref_pred == srv_pred).mean()), accuracy_torch=acc_torch, accuracy_onnx=acc_onnx,
        accuracy_delta=acc_onnx - acc_torch, max_logit_diff=float(np.abs(reference - served).max()),
        max_prob_diff=float(np.abs(softmax(reference) - softmax(served)).max()), passed=False)
    report.passed = report.agreement >= min_agreement and -report.accuracy_delta <= max_accuracy_drop
    metrics_path = serving_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics["parity"] = {**report.as_dict(), "min_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop}
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if raise_on_failure and not report.passed:
        raise ParityError(
            f"{serving_dir}: the {classifier.meta.get('quantization')} model agrees with the float32 PyTorch model on "
            f"{report.agreement:.2%} of {report.n} test tweets (gate {min_agreement:.0%}) and changes accuracy by "
            f"{report.accuracy_delta:+.4f} (gate -{max_accuracy_drop}); do not ship it: try another quantization "
            f"(--quantization int8-static or fp32) or more calibration texts")
    return report


def export_serving_model(checkpoint_dir: str | Path, work_dir: str | Path, out_dir: str | Path, labels: Sequence[str],
                         max_length: int, name: str, quantization: str = DEFAULT_QUANTIZATION,
                         calibration_texts: Sequence[str] = (), base_model: str | None = None, card: dict | None = None,
                         fp32_graph: Path | None = None, cls_only: bool = True) -> Path:
    """Checkpoint -> serving directory with `quantization`; `fp32_graph` reuses an earlier `export_onnx` in `work_dir`;
    `cls_only=False` quantizes the full graph even where the CLS-only one applies (for measuring what it buys)."""
    work_dir = Path(work_dir)
    fp32_graph = fp32_graph or export_onnx(checkpoint_dir, work_dir)
    if quantization == "fp32":
        graph, source = fp32_graph, "full"
    else:
        source_path = quantization_source(work_dir, cls_only)
        source = "cls-only-last-layer" if source_path.name == CLS_ONLY_GRAPH else "full"
        graph = quantize(source_path, work_dir / f"model-{quantization}-{source}.onnx", quantization, calibration_texts,
                         Path(checkpoint_dir) / "tokenizer.json", max_length)
    return write_serving_dir(graph, checkpoint_dir, out_dir, labels, max_length, name, quantization, base_model, card,
                             graph=source)


def quantization_source(work_dir: str | Path, cls_only: bool = True) -> Path:
    """The float32 graph `export_onnx` wrote under `work_dir` to quantize: the CLS-only graph where there is one
    (and `cls_only`), else the plain export."""
    graph = Path(work_dir) / CLS_ONLY_GRAPH
    return graph if cls_only and graph.is_file() else plain_export(work_dir)


def tweets_per_second(classifier: Classifier, texts: Sequence[str], batch_size: int = 64) -> float:
    """Throughput of the scoring core's batching over `texts`: windows of batches sorted by the model's own lengths,
    then `predict_proba` (normalization and tokenization included), as `tweetmood score` runs it."""
    import time

    from tweetmood.batching import scored_in_order
    from tweetmood.records import Record

    classifier.predict_proba(list(texts[:batch_size]))  # warm-up: first-run allocations
    records = [Record(i, text) for i, text in enumerate(texts, 1)]
    start = time.perf_counter()
    for _ in scored_in_order(records, classifier.predict_proba, batch_size, lengths=classifier.lengths):
        pass
    return len(texts) / (time.perf_counter() - start)


def runtime_ops(onnx_path: str | Path, out_path: str | Path) -> Counter:
    """The operators onnxruntime actually runs after its load-time fusions (what the kernels are)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(out_path)
    ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    return op_counts(out_path)


_BOOKKEEPING_OPS = {"Constant", "Shape", "Unsqueeze", "Concat", "Slice", "Identity", "Cast", "Reshape", "Transpose",
                    "Squeeze", "ConstantOfShape", "Equal", "Where", "Expand", "Sub", "Div", "Sqrt", "Mul", "Add"}


def compare_quantizations(checkpoint_dir: str | Path, work_dir: str | Path, labels: Sequence[str], texts: Sequence[str],
                          calibration_texts: Sequence[str], methods: Sequence[str] = tuple(QUANTIZATIONS),
                          max_length: int = 64, name: str = "compare", true_labels: Sequence[str] | None = None) -> list[dict]:
    """One row per quantization: file size, tweets/s at 1 thread, batch-independence diff, parity, kernels run."""
    work_dir = Path(work_dir)
    fp32 = export_onnx(checkpoint_dir, work_dir)
    rows = []
    for method in methods:
        serving = export_serving_model(checkpoint_dir, work_dir, work_dir / f"serving-{method}", labels, max_length,
                                       name, method, calibration_texts, fp32_graph=fp32)
        classifier = Classifier.from_dir(serving, threads=1)
        row = {"quantization": method, "size_mb": round((serving / "model.onnx").stat().st_size / 1e6, 2),
               "tweets_per_s_1_thread": round(tweets_per_second(classifier, texts), 1),
               "batch_independence_max_abs_diff": batch_independence(classifier, texts[:128])}
        if true_labels is not None:
            parity = check_parity(checkpoint_dir, serving, texts, true_labels, raise_on_failure=False)
            row.update(agreement=round(parity.agreement, 4), max_logit_diff=round(parity.max_logit_diff, 4))
        ops = runtime_ops(serving / "model.onnx", work_dir / f"runtime-{method}.onnx")
        row["runtime_ops"] = {k: v for k, v in sorted(ops.items()) if k not in _BOOKKEEPING_OPS}
        rows.append(row)
    return rows
