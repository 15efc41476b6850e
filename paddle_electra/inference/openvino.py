"""The OpenVINO engine (CPU): runs model.onnx, paddle2onnx's graph of the export (rewrites.py), in f32 or,
for precision "bf16", with OpenVINO's bf16 inference precision (CPUs with native bf16: the predictor refuses
bf16 elsewhere). OpenVINO reads the int8 graph too but compiles it to f32 matmuls, so it takes no int8
(choice.choose_engine). `import openvino` happens when a runner is made: the package is optional."""
from __future__ import annotations

from typing import Dict

from ..config import ElectraConfig
from .rewrites import onnx_graph


def graph(export_dir: str, meta: Dict, config: ElectraConfig, precision: str) -> str:
    """The graph this engine runs, made on first use."""
    return onnx_graph(export_dir, meta, config, "plain")


class OpenVinoRunner:
    """feeds {name: int64 array} -> the graph's outputs, through one compiled OpenVINO model."""

    def __init__(self, path: str, num_threads: int, precision: str = "fp32"):
        import openvino as ov
        # said explicitly either way: on CPUs with bf16 OpenVINO's default precision hint is bf16
        hint = "bf16" if precision == "bf16" else "f32"
        self.compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": num_threads,
                                                              "INFERENCE_PRECISION_HINT": hint})
        self.request = self.compiled.create_infer_request()
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]

    def __call__(self, feeds):
        self.request.infer({n: feeds[n] for n in self.inputs})
        return tuple(self.request.get_output_tensor(i).data.copy() for i in range(len(self.outputs)))
