"""A serving graph for BERT-family classifiers that computes the last layer for the [CLS] token only.

The classifier reads one vector: the last layer's output at position 0 ([CLS]), through the pooler.
Every other position of the last layer is computed and thrown away. In the last layer [CLS] still
attends to every token, so keys and values are needed for all positions, but the query, the
attention output projection, both feed-forward matrices and the two LayerNorms are needed for one
position only: about 10/12 of the last layer's matrix work, a seventh of a 6-layer encoder's.
The result is the same function (checked against the model within 1e-4 before use), so accuracy
cannot move; only the graph is smaller.

The forward pass is written out from the weights (names shared by BERT, MiniLM and RoBERTa-style
checkpoints in `transformers` 4.x and 5.x) rather than calling the library's layer classes, whose
signatures change between releases; models of another shape (DistilBERT) return None from
`supports` and keep the standard export.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


def supports(model: nn.Module) -> bool:
    """True for sequence classifiers with a BERT encoder, a pooler and an activation we can write out."""
    base = getattr(model, "bert", None)
    return (base is not None and getattr(base, "pooler", None) is not None and hasattr(model, "classifier")
            and getattr(model.config, "position_embedding_type", "absolute") == "absolute"
            and model.config.hidden_act in _ACTIVATIONS)


class ClsOnlyClassifier(nn.Module):
    """Logits of a BertForSequenceClassification, with the last layer computed for position 0 only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not supports(model):
            raise ValueError(f"{type(model).__name__}: not a BERT-style classifier with a pooler")
        self.model = model.eval()
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.act = _ACTIVATIONS[cfg.hidden_act]
        self.eps = cfg.layer_norm_eps

    def _embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        emb = self.model.bert.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = emb.word_embeddings(input_ids) + emb.token_type_embeddings(token_type_ids) + emb.position_embeddings(positions)
        return emb.LayerNorm(x)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def _layer(self, layer: nn.Module, x: torch.Tensor, mask: torch.Tensor, cls_only: bool) -> torch.Tensor:
        att = layer.attention
        queries_from = x[:, :1] if cls_only else x
        q = self._split(att.self.query(queries_from))
        k, v = self._split(att.self.key(x)), self._split(att.self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2)
        context = context.reshape(context.shape[0], context.shape[1], self.heads * self.head_dim)
        h = att.output.LayerNorm(att.output.dense(context) + queries_from)
        return layer.output.LayerNorm(layer.output.dense(self.act(layer.intermediate.dense(h))) + h)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self._embed(input_ids, token_type_ids)
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        layers = self.model.bert.encoder.layer
        for i, layer in enumerate(layers):
            x = self._layer(layer, x, mask, cls_only=i == len(layers) - 1)
        pooled = self.model.bert.pooler.activation(self.model.bert.pooler.dense(x[:, 0]))
        return self.model.classifier(pooled)


@torch.no_grad()
def export_cls_only(checkpoint_dir: str | Path, out_path: str | Path, opset: int = 18) -> Path | None:
    """Write the CLS-only float32 graph of a checkpoint to `out_path` (inputs input_ids, attention_mask,
    token_type_ids; output logits; dynamic batch and sequence axes); None when the model is not BERT-style."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint_dir)).float().eval()
    if not supports(model):
        return None
    wrapper = ClsOnlyClassifier(model)
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 5, 3, 0, 0]]) % model.config.vocab_size  # any ids: the trace is shape-only
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "token_type_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    torch.onnx.export(wrapper, (ids, mask, torch.zeros_like(ids)), str(out_path), opset_version=opset,
                      input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
                      dynamic_axes=axes, dynamo=False)
    return out_path
