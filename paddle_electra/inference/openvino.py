"""The OpenVINO engine (CPU, f32): runs model.onnx, paddle2onnx's graph of the export (rewrites.py). OpenVINO
reads the int8 graph too but compiles it to f32 matmuls, so it takes fp32 only (choice.choose_engine).
`import openvino` happens when a runner is made: the package is optional."""
from __future__ import annotations

from typing import Dict

from ..config import ElectraConfig
from .rewrites import onnx_graph


def graph(export_dir: str, meta: Dict, config: ElectraConfig, precision: str) -> str:
    """The graph this engine runs, made on first use."""
    return onnx_graph(export_dir, meta, config, "plain")


class OpenVinoRunner:
    """feeds {name: int64 array} -> the graph's outputs, through one compiled OpenVINO model."""

    def __init__(self, path: str, num_threads: int):
        import openvino as ov
        # f32 said explicitly: on CPUs with bf16 OpenVINO's default precision hint is bf16
        self.compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": num_threads,
                                                              "INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]

    def __call__(self, feeds):
        self.request.infer({n: feeds[n] for n in self.inputs})
        return tuple(self.request.get_output_tensor(i).data.copy() for i in range(len(self.outputs)))
