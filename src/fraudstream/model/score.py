"""Scoring with ONNX Runtime, and which features raised a score: the reference the JVM's
scoring step (`jvm/src/io/fraudstream/flink/RiskScorer.java`) is held equal to.

Risk is the model's probability of fraud, as ONNX Runtime computes it in float32 (inputs are cast
to float32), on one thread, so Python and the JVM get the same numbers. An explanation sets each
feature in turn to its baseline (its usual value for honest orders, from the model file) and
scores again: `raised_by` is how much the risk falls. The top `explain_top` with raised_by > 0,
largest first (equal: feature order), are the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fraudstream.detectors.risk import Reason
from fraudstream.model.file import ModelFile, ModelFileError


class Scorer:
    def __init__(self, model: ModelFile, explain_top: int = 3) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model.onnx, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own exception types for a bad graph
            raise ModelFileError(f"model {model.version} cannot be loaded by ONNX Runtime: {exc}") from None
        self.input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if "probabilities" not in outputs:
            raise ModelFileError(f"model {model.version} has no 'probabilities' output")
        self.model = model
        self.baseline = np.asarray(model.baseline, dtype=np.float32)
        self.explain_top = explain_top
        self._check_graph()

    def _check_graph(self) -> None:
        """Score the baseline once: a graph that reads other input or gives other output than
        [N, 11] float32 in, [N, 2] probabilities in [0, 1] out is one line here, at start-up,
        not a task failing on the first batch."""
        try:
            (out,) = self.session.run(["probabilities"], {self.input: self.baseline[None, :]})
        except Exception as exc:  # ONNX Runtime's own exception types
            raise ModelFileError(
                f"model {self.model.version} cannot score its {len(self.model.features)} features: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        shape = getattr(out, "shape", None)
        if shape != (1, 2) or not np.all((out >= 0) & (out <= 1)):
            raise ModelFileError(
                f"model {self.model.version} gives probabilities of shape {shape}, not (1, 2) in [0, 1]: "
                "not a two-class risk model (train one with 'fraudstream train')"
            )

    def score(self, rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Risk per row (float64 holding the float32 probability of class 1)."""
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.model.features):
            raise ValueError(f"expected rows of {len(self.model.features)} features, got shape {x.shape}")
        if not len(x):
            return np.zeros(0)
        (probabilities,) = self.session.run(["probabilities"], {self.input: x})
        return probabilities[:, 1].astype(np.float64)

    def explain(self, row: Sequence[float], risk: float) -> list[Reason]:
        """The features that raised this row's risk the most (see the module's doc)."""
        x = np.asarray(row, dtype=np.float32)
        variants = np.repeat(x[None, :], len(x), axis=0)
        np.fill_diagonal(variants, self.baseline)
        lowered = self.score(variants)
        raised = [(risk - lowered[i], i) for i in range(len(x)) if risk - lowered[i] > 0]
        raised.sort(key=lambda pair: (-pair[0], pair[1]))
        return [
            Reason(
                feature=self.model.features[i],
                value=float(row[i]),
                usual=float(self.model.baseline[i]),
                raised_by=float(by),
            )
            for by, i in raised[: self.explain_top]
        ]
