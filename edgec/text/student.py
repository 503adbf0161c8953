"""The BiLSTM student of Tang et al.: embedding -> 1-layer BiLSTM -> [h_fwd; h_bwd] -> ReLU MLP -> logits.

Input is one int64 tensor of word ids ``(batch, seq)``, right-padded with ``<pad>`` = 0; each
sentence's length is counted from the padding inside the model (at least 1), so a deployed model
takes a single input and the same ids a server builds with ``vocab.json``. The final hidden states
of both directions come from a packed sequence, so padding never enters the recurrence: in ONNX
this is one ``LSTM`` node with ``sequence_lens`` (exported with the TorchScript exporter, which
keeps ``nn.LSTM`` as the ONNX LSTM op; the dynamo exporter unrolls it into a loop).

The paper's SST-2 student: 300-d word2vec embeddings, 150 hidden units per direction, a 200-unit
ReLU layer. Here embeddings are initialised from the teacher's word-piece embeddings (see
:func:`teacher_embedding_init`) and their size is a recipe option.

Example:
    >>> model = BiLSTMClassifier(vocab_size=1000, embed_dim=64)
    >>> model(torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from edgec.atomic import atomic_path
from edgec.errors import ModelError
from edgec.text.vocab import PAD_ID


class BiLSTMClassifier(nn.Module):
    """See the module docstring. ``config()`` gives the constructor arguments (saved with the weights)."""

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden: int = 150, mlp_hidden: int = 200,
                 num_classes: int = 2, dropout: float = 0.1):
        super().__init__()
        self._config = {"vocab_size": vocab_size, "embed_dim": embed_dim, "hidden": hidden,
                        "mlp_hidden": mlp_hidden, "num_classes": num_classes, "dropout": dropout}
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, mlp_hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(mlp_hidden, num_classes))

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) int64 -> (B, classes)
        lengths = (ids != PAD_ID).sum(dim=1).clamp(min=1)
        x = self.embedding(ids)                             # (B, T, E)
        if torch.onnx.is_in_onnx_export():
            h = _OnnxBiLSTM.apply(x.transpose(0, 1), lengths, *self._onnx_weights(), self.lstm.hidden_size)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)                   # h: (2, B, hidden), back in input order
        return self.head(torch.cat([h[0], h[1]], dim=1))   # (B, 2 * hidden) -> (B, classes)

    def _onnx_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """nn.LSTM's weights in ONNX LSTM layout: W (2, 4H, E), R (2, 4H, H), B (2, 8H).

        torch orders the gates (input, forget, cell, output), ONNX (input, output, forget, cell).
        """
        def gates(t: torch.Tensor) -> torch.Tensor:
            i, f, c, o = t.chunk(4, dim=0)
            return torch.cat([i, o, f, c], dim=0)

        dirs = ("_l0", "_l0_reverse")
        w = torch.stack([gates(getattr(self.lstm, "weight_ih" + d)) for d in dirs])
        r = torch.stack([gates(getattr(self.lstm, "weight_hh" + d)) for d in dirs])
        b = torch.stack([torch.cat([gates(getattr(self.lstm, "bias_ih" + d)), gates(getattr(self.lstm, "bias_hh" + d))])
                         for d in dirs])
        return w, r, b


class _OnnxBiLSTM(torch.autograd.Function):
    """Export-only: one ONNX ``LSTM`` node (bidirectional, ``sequence_lens``) returning ``Y_h`` (2, B, H).

    The TorchScript exporter cannot export ``pack_padded_sequence``; this node computes what the
    packed ``nn.LSTM`` does in torch (checked by the export parity test). Its eager ``forward`` only
    gives the exporter the output's shape: it is never used to compute results.
    """

    @staticmethod
    def forward(ctx, x, lengths, w, r, b, hidden: int):  # noqa: ARG004 - shapes only
        return x.new_zeros(2, x.shape[1], hidden)

    @staticmethod
    def symbolic(g, x, lengths, w, r, b, hidden: int):
        seq_lens = g.op("Cast", lengths, to_i=6)  # ONNX LSTM wants int32 sequence_lens
        _, h, _ = g.op("LSTM", x, w, r, b, seq_lens, direction_s="bidirectional", hidden_size_i=hidden, outputs=3)
        return h


def count_params(model: nn.Module) -> dict[str, int]:
    """``{"total", "without_embeddings"}`` parameter counts (embedding tables dominate small models)."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    return {"total": int(total), "without_embeddings": int(total - emb)}


def lstm_macs(config: dict[str, Any], tokens: int) -> int:
    """Multiply-accumulates of one forward pass over ``tokens`` words (LSTM gates + the MLP head)."""
    e, h, m, k = config["embed_dim"], config["hidden"], config["mlp_hidden"], config["num_classes"]
    return int(2 * tokens * 4 * h * (e + h) + 2 * h * m + m * k)


def save_student(model: BiLSTMClassifier, path: str | Path) -> Path:
    """Weights as safetensors with the constructor config in the metadata (no pickle)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(state, str(tmp), metadata={"edgec_model": "bilstm", "config": json.dumps(model.config(), sort_keys=True)})
    return Path(path)


def load_student(path: str | Path) -> BiLSTMClassifier:
    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("edgec_model") != "bilstm":
            raise ValueError("no 'edgec_model: bilstm' metadata")
        model = BiLSTMClassifier(**json.loads(meta["config"]))
        model.load_state_dict(load_file(str(p)))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{p} is not an edgec BiLSTM student: {exc}", hint="rebuild it with edgec build") from None
    return model.eval()


def teacher_embedding_init(words: list[str], tokenizer: Any, embeddings: np.ndarray, dim: int,
                           specials: dict[str, str]) -> np.ndarray:
    """Word vectors (len(words), dim) from a teacher's word-piece embedding table (V_wp, D).

    Each word's vector is the mean of its word pieces' rows (the teacher tokenizer splits it),
    ``specials`` maps our special tokens to the teacher's (``[MASK]`` -> its mask token, ``<unk>``
    -> its unk token); ``<pad>`` is zero. When ``dim < D`` the vectors are projected on their
    first ``dim`` principal components (PCA over the vocabulary), then all are scaled to unit
    average norm, a scale an LSTM trains well from.
    """
    d = embeddings.shape[1]
    out = np.zeros((len(words), d), dtype=np.float64)
    for i, w in enumerate(words):
        if w == "<pad>":
            continue
        piece_ids = tokenizer.convert_tokens_to_ids([specials[w]]) if w in specials else \
            tokenizer(w, add_special_tokens=False)["input_ids"]
        if piece_ids:
            out[i] = embeddings[piece_ids].mean(axis=0)
    if dim < d:
        rows = out[1:]
        mean = rows.mean(axis=0)
        _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
        out = np.vstack([np.zeros((1, dim)), (rows - mean) @ vt[:dim].T])
    elif dim > d:
        raise ModelError(f"text.student.embed_dim {dim} is larger than the teacher's embedding size {d}",
                         hint=f"set embed_dim <= {d}, or embed_init: random")
    norms = np.linalg.norm(out[1:], axis=1)
    out /= max(float(norms.mean()), 1e-8)
    return out.astype(np.float32)
