"""The ONNX graphs derived from the exported Paddle graph, each made on first use in the cache folder,
listed in export.json with its recipe and signed with it (cache.derive):

    model.json (the export)
      -> model.onnx         paddle2onnx                               run by OpenVINO
      -> model.fused.onnx   _fusable, then ONNX Runtime's fusions     run by ONNX Runtime (fp32)
      -> model.int8.onnx    quantize_dynamic of the fused graph       run by ONNX Runtime (int8)

`_fusable` rewrites paddle2onnx's graph into the form onnxruntime.transformers' BERT attention fusion
matches; it keys on the op sequence modeling.attention and modeling.additive_attention_mask export to
(tests/test_inference_engines.py::test_the_rewrites_match_the_op_order_of_modeling fails when it changes).
Every import of onnx, onnxruntime, onnxoptimizer and paddle2onnx is inside the step that needs it: they are
optional, and a missing fusion dependency leaves the plain graph, said in export.json.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from typing import Dict, Optional

import numpy as np

from ..config import ElectraConfig
from ..cpu import cpu_info
from .cache import MODEL_PREFIX, ONNX_FUSED, ONNX_INT8, ONNX_PLAIN, InferenceError, derive, versions, write_file
from .static_export import exported_model

ONNX_OPSET = 14
# the ops whose weights int8 quantizes: the projections, and the fused attention's packed Q, K, V (QAttention)
_INT8_OPS = ("MatMul", "Attention")


@contextlib.contextmanager
def _quiet_tools():
    """While an ONNX graph is made: onnxruntime's quantizer logs every tensor through the root logger
    (which Paddle's logging set-up prints) and its sessions list unused initializers; hold records up to
    WARNING back (what matters is logged by us after) and the C++ warnings too (back to the default after)."""
    before = logging.root.manager.disable
    logging.disable(max(before, logging.WARNING))
    ort = None
    try:
        import onnxruntime as ort
        ort.set_default_logger_severity(3)
    except ImportError:
        pass
    try:
        yield
    finally:
        logging.disable(before)
        if ort is not None:
            ort.set_default_logger_severity(2)


def _quietly(build):
    def run(tmp):
        with _quiet_tools():
            return build(tmp)
    return run


def _paddle2onnx(export_dir: str, output: str, opset_version: int = ONNX_OPSET) -> None:
    try:
        import paddle2onnx
    except ImportError:
        raise ImportError("ONNX export needs paddle2onnx (pip install paddle2onnx)") from None
    # onnxoptimizer, not the default polygraphy, which pip-installs onnx_graphsurgeon at run time
    paddle2onnx.export(os.path.join(export_dir, MODEL_PREFIX + ".json"),
                       os.path.join(export_dir, MODEL_PREFIX + ".pdiparams"), output,
                       opset_version=opset_version, enable_onnx_checker=True, optimize_tool="onnxoptimizer")


def _fusable(model):
    """The paddle2onnx graph in the form onnxruntime.transformers' attention fusion matches (that of HF's BERT
    export): without Identity and "+ 0" / "* 1" nodes (paddle2onnx's own onnxoptimizer pass list fails with
    onnxoptimizer 0.3.13), scores / sqrt(d) instead of scores * (1 / sqrt(d)), and the additive mask as
    (1 - cast(unsqueeze(unsqueeze(attention_mask)))) * c instead of Paddle's scale op (cast(unsqueeze(mask)) *
    -1 + 1) * c. The same values (x * (1/c) and x / c differ by at most one rounding). Returns (model, notes)."""
    import onnxoptimizer
    from onnx import NodeProto, TensorProto, helper, numpy_helper
    model = onnxoptimizer.optimize(model, ["eliminate_identity", "eliminate_nop_with_unit", "eliminate_nop_cast",
                                           "eliminate_nop_transpose", "eliminate_nop_reshape",
                                           "extract_constant_to_initializer", "eliminate_deadend",
                                           "eliminate_unused_initializer"])
    g = model.graph
    nodes = list(g.node)  # held for the whole pass: their ids name them in `replaced`
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in nodes for o in n.output}
    consumers: Dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inputs = {i.name for i in g.input}

    def scalar(name):
        a = consts.get(name)
        return float(a.reshape(())) if a is not None and a.size == 1 else None

    def parent(node, op):  # the producer of input 0 when it is `op` and feeds nothing else
        p = producer.get(node.input[0]) if node is not None else None
        return p if p is not None and p.op_type == op and len(consumers.get(p.output[0], ())) == 1 else None

    def const(name, value):
        g.initializer.append(numpy_helper.from_array(value, name))
        return name

    replaced, notes = {}, {"masks": 0, "score_divs": 0}
    for n in nodes:
        c = scalar(n.input[1]) if n.op_type == "Mul" and len(n.input) == 2 else None
        if c is None:
            continue
        # additive_attention_mask: (1 - cast(unsqueeze(mask))) * -10000, exported as Paddle's scale ops
        add = parent(n, "Add")
        neg = parent(add, "Mul")
        unsq = parent(neg, "Unsqueeze")
        cast = parent(unsq, "Cast")
        if (c < 0 and cast is not None and cast.input[0] in inputs and scalar(add.input[1]) == 1.0
                and scalar(neg.input[1]) == -1.0 and list(consts.get(unsq.input[1], [])) == [1, 2]):
            k = notes["masks"]
            notes["masks"] += 1
            x = f"fusable.mask{k}"
            replaced[id(n)] = [
                helper.make_node("Unsqueeze", [cast.input[0], const(f"{x}.axis1", np.array([1], np.int64))],
                                 [f"{x}.u1"], name=f"{x}.Unsqueeze1"),
                helper.make_node("Unsqueeze", [f"{x}.u1", const(f"{x}.axis2", np.array([2], np.int64))],
                                 [f"{x}.u2"], name=f"{x}.Unsqueeze2"),
                helper.make_node("Cast", [f"{x}.u2"], [f"{x}.float"], to=TensorProto.FLOAT, name=f"{x}.Cast"),
                helper.make_node("Sub", [const(f"{x}.one", np.array(1.0, np.float32)), f"{x}.float"], [f"{x}.sub"],
                                 name=f"{x}.Sub"),
                helper.make_node("Mul", [f"{x}.sub", const(f"{x}.value", np.array(c, np.float32))], list(n.output),
                                 name=f"{x}.Mul")]
            for old in (add, neg, unsq, cast):
                replaced[id(old)] = []
            continue
        # modeling.attention: matmul(q, k^T) * (1/sqrt d) + mask -> softmax
        scores = producer.get(n.input[0])
        after = consumers.get(n.output[0], [])
        if (scores is not None and scores.op_type == "MatMul" and len(after) == 1 and after[0].op_type == "Add"
                and any(x.op_type == "Softmax" for x in consumers.get(after[0].output[0], ()))):
            k = notes["score_divs"]
            notes["score_divs"] += 1
            replaced[id(n)] = [helper.make_node(
                "Div", [n.input[0], const(f"fusable.scale{k}", np.array(1.0 / c, np.float32))], list(n.output),
                name=f"fusable.Div{k}")]
    out = []
    for n in nodes:  # standalone copies, before the graph's own list is cleared
        for m in replaced.get(id(n), [n]):
            out.append(NodeProto())
            out[-1].CopyFrom(m)
    del g.node[:]
    g.node.extend(out)
    return model, notes


def _fuse(plain: str, tmp: str, config: ElectraConfig) -> Dict:
    """onnxruntime.transformers.optimizer's BERT fusions of `plain` into `tmp`; the plain graph when the fusion
    fails (said in a warning and in the notes)."""
    try:  # every import too: the fusion is optional (sympy, onnxoptimizer), the plain graph is not
        import onnx
        import onnxruntime as ort
        from onnxruntime.transformers import optimizer
        try:
            graph, rewrites = _fusable(onnx.load(plain))
        except ImportError:  # onnxoptimizer (paddle2onnx brings it below Python 3.12)
            graph, rewrites = onnx.load(plain), "none: onnxoptimizer is not installed"
        onnx.save(graph, tmp)  # the optimizer's sessions read a file more reliably than a ModelProto
        # ONNX Runtime's basic graph optimizations first (what optimize_model's default opt_level 1 runs,
        # through a helper that imports torch for a version check), then the fusions alone (opt_level 0)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = tmp
        so.log_severity_level = 3
        ort.InferenceSession(tmp, so, providers=["CPUExecutionProvider"], disabled_optimizers=["ConstantSharing"])
        model = optimizer.optimize_model(tmp, model_type="bert", num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size, opt_level=0)
        model.save_model_to_file(tmp)
    except Exception as e:  # noqa: BLE001 - any failure of the optimizer: run the plain graph
        shutil.copyfile(plain, tmp)
        failed = f"{type(e).__name__}: {e}"
        return {"fusion": f"failed: {failed}", "warnings": [
            f"onnxruntime's transformers optimizer failed ({failed}); using the plain ONNX graph"]}
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    notes = {"fusion": fused, "rewrites": rewrites}
    if fused.get("Attention", 0) < config.num_hidden_layers:
        notes["warnings"] = [f"onnxruntime's optimizer fused the attention of {fused.get('Attention', 0)} "
                             f"of {config.num_hidden_layers} layers ({fused})"]
    return notes


def _quantize(fused: str, tmp: str, reduce_range: bool) -> Dict:
    """onnxruntime.quantization.quantize_dynamic of `fused`: MatMul (and QAttention) weights to QInt8,
    activations quantized per call."""
    import onnx
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:  # its own dependencies (ml_dtypes): the hub extra declares them
        raise InferenceError(f"precision='int8' needs onnxruntime.quantization, which cannot be imported "
                             f"here ({e}); pip install ml_dtypes") from e
    # the fused ops (EmbedLayerNormalization, Attention) are outside ONNX shape inference: say float
    quantize_dynamic(fused, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=list(_INT8_OPS),
                     reduce_range=reduce_range, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"quantization": f"dynamic, {' and '.join(_INT8_OPS)} weights QInt8" +
            (" in 7 bits (reduce_range: no VNNI on this CPU)" if reduce_range else "")}


def onnx_graph(export_dir: str, meta: Dict, config: ElectraConfig, kind: str = "plain") -> str:
    """The ONNX file of a cache folder, made on first use and kept there (signed): "plain" (paddle2onnx),
    "fused" (onnxruntime.transformers.optimizer's BERT fusions; the plain graph when the fusion fails,
    said in a warning and in export.json), "int8" (onnxruntime.quantization.quantize_dynamic of the fused
    graph: MatMul weights to QInt8, activations quantized per call)."""
    if kind == "plain":
        return derive(export_dir, meta, ONNX_PLAIN, {"opset": ONNX_OPSET, **versions("paddle2onnx")},
                      _quietly(lambda tmp: _paddle2onnx(export_dir, tmp)))
    plain = onnx_graph(export_dir, meta, config, "plain")
    ort_version = versions("onnxruntime", "onnx")

    def made_from(name):  # a graph is remade when the one it is made from was
        return {"from": name, "from_build": meta["derived"][name].get("build")}
    if kind == "fused":
        return derive(export_dir, meta, ONNX_FUSED, {**made_from(ONNX_PLAIN), "rewrites": 2, **ort_version,
                                                     **versions("sympy", "onnxoptimizer")},
                      _quietly(lambda tmp: _fuse(plain, tmp, config)))
    if kind == "int8":
        fused = onnx_graph(export_dir, meta, config, "fused")
        # Without VNNI ONNX Runtime's u8 x s8 kernels sum pairs of products in 16 bits, which saturates with
        # 8-bit weights: 7-bit weights there (reduce_range; the measured errors are in docs/inference.md)
        reduce_range = not cpu_info().has_vnni
        return derive(export_dir, meta, ONNX_INT8,
                      {**made_from(ONNX_FUSED), "reduce_range": reduce_range, "ops": list(_INT8_OPS), **ort_version},
                      _quietly(lambda tmp: _quantize(fused, tmp, reduce_range)))
    raise ValueError(f"kind must be plain, fused or int8, got {kind!r}")


def export_onnx(model_dir: str, output: str, task: Optional[str] = None, opset_version: int = ONNX_OPSET) -> str:
    """Write `output` (.onnx) from the cached static export through paddle2onnx: the same inputs
    (int64 input_ids, token_type_ids, attention_mask with dynamic batch and length) and outputs as the
    predictor. Run it with onnxruntime (the `bench` extra)."""
    try:
        import paddle2onnx  # noqa: F401  (fail before the export)
    except ImportError:
        raise ImportError("ONNX export needs paddle2onnx (pip install paddle2onnx)") from None
    export_dir, _ = exported_model(model_dir, task)
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    write_file(output, lambda tmp: _paddle2onnx(export_dir, tmp, opset_version))
    return output
