"""The ONNX Runtime engine (CPU): runs model.fused.onnx in fp32 and model.int8.onnx in int8 (rewrites.py
makes both from the export). `import onnxruntime` happens when a runner is made: the package is optional."""
from __future__ import annotations

from typing import Dict

from ..config import ElectraConfig
from .rewrites import onnx_graph


def graph(export_dir: str, meta: Dict, config: ElectraConfig, precision: str) -> str:
    """The graph this engine runs for `precision`, made on first use."""
    return onnx_graph(export_dir, meta, config, "int8" if precision == "int8" else "fused")


class OrtRunner:
    """feeds {name: int64 array} -> the graph's outputs, through one ONNX Runtime session."""

    def __init__(self, path: str, num_threads: int, precision: str = "fp32"):
        """`precision` is the graph's own (graph() made the int8 graph for int8): nothing to set here."""
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = num_threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # not its notes about unused initializers
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds):
        return tuple(self.session.run(None, {n: feeds[n] for n in self.inputs}))
