"""The Paddle Inference engine: runs the exported graph itself (no derived graph).

CPU: oneDNN kernels, `num_threads` (default: all cores, runtime.default_num_threads, split between this
machine's processes of a paddle.distributed.launch job), and `identity_op_clean_pass` in front of
Paddle's oneDNN passes: it deletes the (inference-time identity) dropout ops, which otherwise sit between
the oneDNN ops and, in bf16, force a bf16 -> fp32 -> bf16 conversion around each of them. bf16 needs
native bf16 instructions (AVX512-BF16 or AMX-BF16); elsewhere oneDNN would emulate it slower than fp32,
so the predictor refuses. GPU: Paddle's GPU passes, optionally TensorRT with dynamic shapes (not tested
on this project's CPU-only machines). What each setting is worth: docs/inference.md.
"""
from __future__ import annotations

import os
from typing import Sequence

import paddle
from paddle import inference as pi

from ..cpu import cpu_info
from ..paddle_compat import supports_bf16_fast
from .cache import MODEL_PREFIX, InferenceError
from .static_export import INPUT_NAMES

# delete inference-time dropout (an identity) before the oneDNN fusions run
CPU_EXTRA_PASSES = ("identity_op_clean_pass",)
# oneDNN keeps primitives per input shape; unbounded, memory grows with every new (batch, length) pair
# (docs/inference.md has the measurement). A bound of 1 costs nothing when consecutive batches share a
# shape, which length bucketing arranges.
DEFAULT_ONEDNN_CACHE_CAPACITY = 1


def cpu_supports_bf16() -> bool:
    """Native bf16 on this CPU (AVX512-BF16 or AMX-BF16), as Paddle's oneDNN build sees it."""
    native = supports_bf16_fast()
    return cpu_info().has_native_bf16 if native is None else native


def gpu_available() -> bool:
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def graph(export_dir: str) -> str:
    return os.path.join(export_dir, MODEL_PREFIX + ".json")


class PaddleRunner:
    """feeds {name: int64 array} -> the graph's outputs, through one Paddle Inference predictor."""

    def __init__(self, export_dir: str, device: str, precision: str, num_threads: int, max_positions: int,
                 use_tensorrt: bool = False, onednn_cache_capacity: int = DEFAULT_ONEDNN_CACHE_CAPACITY,
                 extra_passes: Sequence[str] = CPU_EXTRA_PASSES):
        cfg = pi.Config(graph(export_dir), os.path.join(export_dir, MODEL_PREFIX + ".pdiparams"))
        if device.startswith("gpu"):
            _configure_gpu(cfg, device, precision, use_tensorrt, max_positions)
        else:
            cfg.disable_gpu()
            cfg.enable_onednn()
            cfg.set_onednn_cache_capacity(onednn_cache_capacity)
            cfg.set_cpu_math_library_num_threads(num_threads)
            if extra_passes:  # run before Paddle's own oneDNN passes
                cfg.enable_custom_passes(list(extra_passes), False)
            if precision == "bf16":
                cfg.enable_onednn_bfloat16()
        cfg.disable_glog_info()
        try:
            self.predictor = pi.create_predictor(cfg)
        except Exception as e:  # Paddle raises ValueError / RuntimeError with C++ context
            raise InferenceError(f"cannot create a Paddle Inference predictor for {export_dir} "
                                 f"({device}, {precision}): {e}") from e
        self.inputs, self.outputs = self.predictor.get_input_names(), self.predictor.get_output_names()

    def __call__(self, feeds):
        for name in self.inputs:
            h = self.predictor.get_input_handle(name)
            h.reshape(list(feeds[name].shape))
            h.copy_from_cpu(feeds[name])
        self.predictor.run()
        return tuple(self.predictor.get_output_handle(n).copy_to_cpu() for n in self.outputs)


def _configure_gpu(cfg, device: str, precision: str, use_tensorrt: bool, max_positions: int):
    device_id = int(device.split(":")[1]) if ":" in device else 0
    if precision == "bf16":
        major, _ = paddle.device.cuda.get_device_capability(device_id)
        if major < 8:
            raise InferenceError(f"precision='bf16' on GPU needs compute capability >= 8.0 (Ampere); "
                                 f"gpu:{device_id} has {major}.x. Use precision='fp32'.")
    prec = pi.PrecisionType.Bfloat16 if precision == "bf16" else pi.PrecisionType.Float32
    cfg.enable_use_gpu(256, device_id, prec)
    if use_tensorrt:
        if precision == "bf16":
            raise InferenceError("TensorRT has no bf16 mode here; use precision='fp32' with TensorRT")
        cfg.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=64, min_subgraph_size=3,
                                   precision_mode=pi.PrecisionType.Float32, use_static=False,
                                   use_calib_mode=False)
        shapes = [{n: [lo, s] for n in INPUT_NAMES} for lo, s in ((1, 1), (64, max_positions), (32, 128))]
        cfg.set_trt_dynamic_shape_info(*shapes)
