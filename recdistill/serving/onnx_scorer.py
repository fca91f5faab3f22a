"""Scores from an export folder with onnxruntime (the `export` extra): the ONNX graphs the export
wrote, and for dot-product models the item vectors the fold-in reads (see `scorers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recdistill.errors import DataError, DependencyError
from recdistill.serving.scorers import wrong_kind

#: Files of an export folder, by role (dot-product models have all three, sequence models the first).
MODEL_FILE = "model.onnx"  # sequence: seq (B, L) -> scores (B, I); dot product: user (B,) -> scores (B, I)
STATE_FILE = "score_state.onnx"  # dot product: state (B, D) -> scores (B, I)
ITEM_VECTORS_FILE = "item_vectors.npy"  # dot product: (I, D) float32, the vectors the fold-in regresses on


def inference_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of the graph at `path` (`threads`: intra-op threads, None = onnxruntime's choice)."""
    try:
        import onnxruntime
    except ImportError:
        raise DependencyError("reading an ONNX export needs onnxruntime: pip install 'recdistill[export]' "
                              "(or recommend from the run folder, which reads the PyTorch checkpoint)") from None
    if not path.exists():
        raise DataError(f"export folder {path.parent} lacks {path.name}; export the run again")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """The exported graphs of one model, run by onnxruntime on the CPU."""

    def __init__(self, folder: Path, kind: str, threads: int | None = None) -> None:
        self.kind, self.folder = kind, Path(folder)
        self.model = inference_session(self.folder / MODEL_FILE, threads)
        self.state = inference_session(self.folder / STATE_FILE, threads) if kind == "dot_product" else None
        self.vectors = np.load(self.folder / ITEM_VECTORS_FILE) if kind == "dot_product" else None  # (I, D)

    def score_sequences(self, seq: np.ndarray) -> np.ndarray:
        if self.kind != "sequence":
            raise wrong_kind(self.kind, "score_sequences")
        return self.model.run(None, {"seq": np.ascontiguousarray(seq, dtype=np.int64)})[0]  # (B, I)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        if self.kind != "dot_product":
            raise wrong_kind(self.kind, "score_users")
        return self.model.run(None, {"user": np.ascontiguousarray(users, dtype=np.int64)})[0]  # (B, I)

    def score_states(self, states: np.ndarray) -> np.ndarray:
        if self.kind != "dot_product":
            raise wrong_kind(self.kind, "score_states")
        return self.state.run(None, {"state": np.ascontiguousarray(states, dtype=np.float32)})[0]  # (B, I)

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        if self.kind != "dot_product":
            raise wrong_kind(self.kind, "item_vectors")
        return self.vectors[np.asarray(items, dtype=np.int64)]  # (n, D)
