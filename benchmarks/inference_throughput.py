"""Inference throughput of ELECTRA on CPU, per precision: our ElectraPredictor with engine="auto" (what users
get: it measures the engines installed here that run the precision, re-timed for this run) and on each engine it
chose among, against the peers of that precision: ONNX Runtime (plain, with its transformers optimizer's
fusions, int8 dynamic quantization) and OpenVINO (f32; bf16 where native), both on an ONNX export of HF's model
with the same weights, PaddleNLP 2.8's ElectraModel (dygraph, eval, no_grad, as its users run it) and HF
transformers' ElectraModel (PyTorch eager; under bf16 autocast where native), all in one process.

    python benchmarks/inference_throughput.py                   # ELECTRA-small, 32 x 128 and batch 1
    python benchmarks/inference_throughput.py --model base

Prints seq/s (median over rounds; engines take turns each round so that a busy machine slows all of
them alike), batch-1 latency, the ratios, and the share of the roofline: model matmul FLOPs per second
over the GEMM peak (chained large matmuls, fp32 and bf16, through a predictor with our settings and
in PyTorch; the faster counts), timed in the same rounds; then per precision ours (auto) against the
best peer of that precision in throughput and the fastest at batch 1.
Also runs the Paddle predictor without our extra IR pass ("plain" = a plain Paddle Inference export).
Appends a JSON line per run to --output.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from paddle_electra import inference, runtime  # noqa: E402
from paddle_electra.config import get_variant  # noqa: E402
from paddle_electra.cpu import cpu_info, machine_record, mkl_status  # noqa: E402

VARIANTS = {"small": "chinese-electra-small", "base": "chinese-electra-base"}


def matmul_flops(cfg, batch: int, seq_len: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of the backbone's matrix products for one batch; the
    elementwise ops (LayerNorm, softmax, GELU) are left out, as rooflines of GEMM-bound models do."""
    E, H, I, L = cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    tokens = batch * seq_len
    per_layer = 2 * tokens * (4 * H * H + 2 * H * I) + 2 * 2 * batch * seq_len * seq_len * H  # + QK^T, PV
    project = 2 * tokens * E * H if E != H else 0
    return L * per_layer + project


GEMM_M, GEMM_K, GEMM_DEPTH = 2048, 2048, 8


def gemm_flops() -> float:
    return GEMM_DEPTH * 2 * GEMM_M * GEMM_K * GEMM_K


def paddle_gemm(precision: str, threads: int):
    """A chain of GEMM_DEPTH [2048 x 2048] matmuls on 2048 rows, run by a Paddle Inference predictor with
    our oneDNN settings: a zero-argument callable, timed alongside the models. A chain, so that the
    fp32 <-> bf16 conversions at the graph's ends do not count (one matmul alone shows ~40% less in bf16)."""
    import paddle
    from paddle import inference as pi

    class Chain(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.fc = paddle.nn.LayerList([paddle.nn.Linear(GEMM_K, GEMM_K, bias_attr=False)
                                           for _ in range(GEMM_DEPTH)])

        def forward(self, x):
            for fc in self.fc:
                x = fc(x)
            return x

    folder = tempfile.mkdtemp(prefix="gemm-peak-")
    layer = Chain()
    layer.eval()
    static = paddle.jit.to_static(layer, input_spec=[paddle.static.InputSpec([None, GEMM_K], "float32", "x")],
                                  full_graph=True)
    paddle.jit.save(static, os.path.join(folder, "mm"))
    cfg = pi.Config(os.path.join(folder, "mm.json"), os.path.join(folder, "mm.pdiparams"))
    cfg.disable_gpu()
    cfg.enable_onednn()
    cfg.set_cpu_math_library_num_threads(threads)
    if precision == "bf16":
        cfg.enable_onednn_bfloat16()
    cfg.disable_glog_info()
    pred = pi.create_predictor(cfg)
    h = pred.get_input_handle("x")
    h.reshape([GEMM_M, GEMM_K])
    h.copy_from_cpu((np.random.default_rng(0).random((GEMM_M, GEMM_K), dtype=np.float32) - 0.5) * 0.05)
    return pred.run


def torch_gemm(precision: str, threads: int):
    """The same chain of matmuls in PyTorch (its oneDNN / MKL kernels): the roofline takes the faster."""
    import torch
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    x = (torch.rand(GEMM_M, GEMM_K) - 0.5).to(dtype)
    w = (torch.rand(GEMM_K, GEMM_K) * 0.05 - 0.025).to(dtype)

    def run():
        y = x
        for _ in range(GEMM_DEPTH):
            y = y @ w
        return y
    return run


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --- the engines: name -> callable(ids, types) that returns the sequence output as numpy -----------------
def ours(model_dir, precision, threads, extra_passes=inference.CPU_EXTRA_PASSES, engine="paddle"):
    """Our ElectraPredictor (its input checks and wrapper included) on the given engine ("auto": the one it
    measures fastest here, timed again for this run): (runner, the engine it runs)."""
    export_dir, meta = inference.exported_model(model_dir)
    pred = inference.ElectraPredictor(export_dir, inference.model_config(model_dir, None), precision=precision,
                                      num_threads=threads, extra_passes=extra_passes, meta=meta, engine=engine,
                                      remeasure=engine == "auto")
    return (lambda ids, types: pred(ids, types, np.ones_like(ids))), pred.engine


def paddlenlp_engine(model_dir, cfg):
    import paddle
    from paddlenlp.transformers import ElectraConfig as NLPConfig, ElectraModel as NLPModel
    from paddle_electra.io import WEIGHTS_NAME, load_tensors
    from paddle_electra.conversion.paddlenlp_export import to_paddlenlp_name
    fields = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
              "pad_token_id")
    model = NLPModel(NLPConfig(**{f: getattr(cfg, f) for f in fields}))
    state = {to_paddlenlp_name(k): v for k, v in load_tensors(os.path.join(model_dir, WEIGHTS_NAME)).items()}
    missing, unexpected = model.set_state_dict(state)
    if missing or unexpected:
        raise RuntimeError(f"PaddleNLP state mismatch: missing {missing}, unexpected {unexpected}")
    model.eval()

    def run(ids, types):
        with paddle.no_grad():  # PaddleNLP derives the mask from the pad id (no padding here)
            return model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(types)).numpy()
    return run


def hf_model(model_dir, cfg, threads):
    """HF transformers' ElectraModel (PyTorch) holding our weights."""
    import torch
    import transformers
    from paddle_electra.io import WEIGHTS_NAME, load_tensors
    from peers import hf_config, load_into
    torch.set_num_threads(threads)
    model = transformers.ElectraModel(hf_config(cfg))
    load_into(model, load_tensors(os.path.join(model_dir, WEIGHTS_NAME)), prefix="")
    model.eval()
    return model


def hf_engine(model, bf16=False):
    """HF's model in eager PyTorch, fp32 or under torch.autocast("cpu", dtype=torch.bfloat16) (how PyTorch users
    run bf16 on CPU)."""
    import torch
    from peers import autocast

    def run(ids, types):
        with torch.no_grad(), autocast(bf16):
            return model(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                         attention_mask=torch.ones_like(torch.from_numpy(ids)))[0].float().numpy()
    return run


# --- deployment peers on an ONNX export of the same model (what HF users deploy: optimum does the same) --
def onnx_export(model, folder: str) -> str:
    import torch
    path = os.path.join(folder, "electra.onnx")
    ids = torch.ones(2, 16, dtype=torch.int64)
    axes = {0: "batch", 1: "seq"}
    kwargs = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    torch.onnx.export(model, (ids, ids, ids * 0), path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state"], opset_version=17,
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                    "last_hidden_state": axes}, **kwargs)
    return path


def ort_variants(onnx_path: str, cfg, folder: str, with_int8: bool) -> dict:
    """{name: onnx file}: plain, with onnxruntime.transformers' BERT fusions (attention, LayerNorm,
    GELU, embeddings), and that fused graph with dynamic int8 quantization of the weights."""
    from onnxruntime.transformers import optimizer
    out = {"ONNX Runtime fp32": onnx_path}
    fused = optimizer.optimize_model(onnx_path, model_type="bert", num_heads=cfg.num_attention_heads,
                                     hidden_size=cfg.hidden_size)
    out["ONNX Runtime fp32 fused"] = os.path.join(folder, "electra.fused.onnx")
    fused.save_model_to_file(out["ONNX Runtime fp32 fused"])
    if with_int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        out["ONNX Runtime int8 dynamic"] = os.path.join(folder, "electra.int8.onnx")
        import onnx
        # the fused ops (EmbedLayerNormalization, Attention) are outside ONNX shape inference: say float
        quantize_dynamic(out["ONNX Runtime fp32 fused"], out["ONNX Runtime int8 dynamic"], weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def ort_engine(path: str, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}

    def run(ids, types):
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types}
        return sess.run(None, {k: v for k, v in feed.items() if k in names})[0]
    return run


def openvino_engine(onnx_path: str, threads: int, precision: str = "f32"):
    import openvino as ov
    compiled = ov.Core().compile_model(onnx_path, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()

    def run(ids, types):
        request.infer({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types})
        return request.get_output_tensor(0).data.copy()
    return run


def precision_of(name: str) -> str:
    return "int8" if "int8" in name else "bf16" if "bf16" in name else "fp32"


def batch_of(batch, seq_len, vocab):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, vocab, (batch, seq_len)).astype("int64")
    types = np.zeros_like(ids)
    types[:, seq_len // 2:] = 1
    return ids, types


def measure(calls, rounds):
    """Round-robin over zero-argument callables: each round times each once, so a machine that gets
    busier or quieter during the run affects all of them alike. Returns {name: [seconds...]}."""
    for call in calls.values():  # warm up (oneDNN primitives, allocator, torch kernels)
        call()
        call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(0.2)  # let the previous engine's OpenMP threads go idle
            times[name].append(_timed(call))
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(VARIANTS), default="small")
    p.add_argument("--model-dir", help="a from_pretrained dir to use instead of random weights of --model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=None, help="timed batches per engine (default 5 small, 3 base)")
    p.add_argument("--latency-rounds", type=int, default=None, help="batch-1 runs per engine (default 20 small, 10 base)")
    p.add_argument("--latency-lens", type=int, nargs="+", default=[32, 128], help="batch-1 sentence lengths")
    p.add_argument("--num-threads", type=int, default=None, help="default: all cores")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["paddlenlp", "hf", "plain", "bf16", "onnxruntime", "openvino", "int8"])
    p.add_argument("--output", default="runs/bench/inference_throughput.jsonl", help="JSON lines appended here")
    args = p.parse_args(argv)

    runtime.configure_process("cpu", args.num_threads)
    threads = args.num_threads or runtime.default_num_threads()
    rounds = args.rounds or (5 if args.model == "small" else 3)
    latency_rounds = args.latency_rounds or (20 if args.model == "small" else 10)
    variant = get_variant(VARIANTS[args.model])
    model_dir = args.model_dir
    if model_dir is None:
        import paddle
        from paddle_electra.modeling import ElectraModel
        model_dir = os.path.join(tempfile.mkdtemp(prefix="bench-"), args.model)
        paddle.seed(0)
        ElectraModel(variant.discriminator).save_pretrained(model_dir)  # random weights: speed only
    cfg = inference.model_config(model_dir, None)
    bf16 = "bf16" not in args.skip and inference.cpu_supports_bf16()
    load = lambda: " ".join(f"{x:.2f}" for x in os.getloadavg())  # noqa: E731
    print(f"{cpu_info().describe()}; {mkl_status()}")
    print(f"ELECTRA-{args.model} ({model_dir}), {threads} threads, batch {args.batch_size} x {args.seq_len}; "
          f"load average {load()}", flush=True)

    print("[1/3] building engines (export, predictors, PaddleNLP, HF, the GEMM-peak matmuls) ...", flush=True)
    precisions = ["fp32"] + (["bf16"] if bf16 else [])
    gemms = {f"GEMM {p} Paddle": paddle_gemm(p, threads) for p in precisions}
    if "hf" not in args.skip:  # torch is there anyway
        gemms.update({f"GEMM {p} torch": torch_gemm(p, threads) for p in precisions})
    # ours: engine="auto" for each precision (what users get: it measures the engines installed here that run
    # the precision and keeps the fastest), and every engine it chose among, by name
    engines = {}
    for precision in precisions + (["int8"] if {"int8", "onnxruntime"}.isdisjoint(args.skip) else []):
        run, chosen = ours(model_dir, precision, threads, engine="auto")
        engines[f"ours {precision} auto={chosen}"] = run
        for engine in inference.auto_candidates(precision):
            if engine != chosen and engine not in args.skip:
                engines[f"ours {precision} engine={engine}"] = ours(model_dir, precision, threads, engine=engine)[0]
    if "plain" not in args.skip:
        for precision in precisions:
            engines[f"plain export {precision}"] = ours(model_dir, precision, threads, extra_passes=())[0]
    if "paddlenlp" not in args.skip:
        engines["PaddleNLP dygraph"] = paddlenlp_engine(model_dir, cfg)
    if not {"hf", "onnxruntime", "openvino"} <= set(args.skip):
        hf = hf_model(model_dir, cfg, threads)
        if "hf" not in args.skip:
            engines["HF PyTorch eager"] = hf_engine(hf)
            if bf16:
                engines["HF PyTorch bf16 autocast"] = hf_engine(hf, bf16=True)
        folder = tempfile.mkdtemp(prefix="bench-onnx-")
        onnx_path = onnx_export(hf, folder)
        if "onnxruntime" not in args.skip:
            for name, path in ort_variants(onnx_path, cfg, folder, "int8" not in args.skip).items():
                engines[name] = ort_engine(path, threads)
        if "openvino" not in args.skip:
            engines["OpenVINO f32"] = openvino_engine(onnx_path, threads)
            if bf16:
                engines["OpenVINO bf16"] = openvino_engine(onnx_path, threads, "bf16")

    print(f"[2/3] throughput, batch {args.batch_size} x {args.seq_len}, {rounds} rounds (+ GEMM peak) ...",
          flush=True)
    ids, types = batch_of(args.batch_size, args.seq_len, cfg.vocab_size)
    calls = {n: (lambda run=run: run(ids, types)) for n, run in engines.items()}
    calls.update(gemms)
    times = measure(calls, rounds)
    load_tp = load()
    gemm_rates = {name: gemm_flops() / statistics.median(times[name]) / 1e9 for name in gemms}
    peak = {p: max(v for name, v in gemm_rates.items() if name.startswith(f"GEMM {p} ")) for p in precisions}
    ref_name = next(n for n in engines if n in ("ours fp32 auto=paddle", "ours fp32 engine=paddle"))
    ref = engines[ref_name](ids, types)  # the differences: against ours on Paddle Inference in fp32
    agree = {n: float(np.abs(run(ids, types) - ref).max()) for n, run in engines.items()}
    lat = {}
    for n_tok in args.latency_lens:
        print(f"[3/3] latency, batch 1 x {n_tok}, {latency_rounds} rounds ...", flush=True)
        ids1, types1 = batch_of(1, n_tok, cfg.vocab_size)
        lat[n_tok] = measure({n: (lambda run=run: run(ids1, types1)) for n, run in engines.items()}, latency_rounds)
    load_lat = load()

    flops = matmul_flops(cfg, args.batch_size, args.seq_len)
    rows = {}
    for name in engines:
        med = statistics.median(times[name])
        prec = "bf16" if precision_of(name) == "bf16" else "fp32"  # int8 against the fp32 GEMM peak
        rows[name] = {"seq_per_s": args.batch_size / med, "seq_per_s_best": args.batch_size / min(times[name]),
                      "latency_ms_p50": {n_tok: 1000 * statistics.median(lat[n_tok][name]) for n_tok in lat},
                      "roofline_share": flops / med / 1e9 / peak[prec], "roofline_of": prec,
                      "max_abs_diff_vs_ours_fp32_paddle": agree[name]}
    base_nlp = rows.get("PaddleNLP dygraph", {}).get("seq_per_s")
    base_hf = rows.get("HF PyTorch eager", {}).get("seq_per_s")
    # per precision: ours with engine="auto" against the strongest peer of that precision (the targets are
    # ratios to it: throughput >= 1.1x the best peer's, batch-1 latency <= the fastest peer's)
    summary = {}
    for precision in ("fp32", "bf16", "int8"):
        auto = next((n for n in rows if n.startswith(f"ours {precision} auto=")), None)
        peers = [n for n in rows if not n.startswith(("ours", "plain export")) and precision_of(n) == precision]
        if auto is None or not peers:
            continue
        best = max(peers, key=lambda n: rows[n]["seq_per_s"])
        fastest = {n_tok: min(peers, key=lambda n: rows[n]["latency_ms_p50"][n_tok]) for n_tok in lat}
        summary[precision] = {
            "ours": auto, "best_peer": best, "x_best_peer": rows[auto]["seq_per_s"] / rows[best]["seq_per_s"],
            "fastest_batch1_peer": fastest,
            "batch1_latency_x_fastest_peer": {n_tok: rows[auto]["latency_ms_p50"][n_tok] /
                                              rows[fastest[n_tok]]["latency_ms_p50"][n_tok] for n_tok in lat}}

    print(f"\nELECTRA-{args.model}, batch {args.batch_size} x {args.seq_len}, {threads} threads, "
          f"{flops / 1e9:.1f} GFLOP per batch; load average during throughput {load_tp}, latency {load_lat}")
    lat_heads = " | ".join(f"batch-1 x {n_tok} ms" for n_tok in lat)
    head = (f"| engine | seq/s (median) | seq/s (best) | x best peer of its precision | x PaddleNLP | x HF | "
            f"roofline share | {lat_heads} | max abs diff |")
    print(head + "\n|" + "---|" * (8 + len(lat)))
    for name, r in rows.items():
        best = summary.get(precision_of(name), {}).get("best_peer")
        x_best = f"{r['seq_per_s'] / rows[best]['seq_per_s']:.2f}" if best else "-"
        x_nlp = f"{r['seq_per_s'] / base_nlp:.2f}" if base_nlp else "-"
        x_hf = f"{r['seq_per_s'] / base_hf:.2f}" if base_hf else "-"
        lats = " | ".join(f"{r['latency_ms_p50'][n_tok]:.1f}" for n_tok in lat)
        print(f"| {name} | {r['seq_per_s']:.1f} | {r['seq_per_s_best']:.1f} | {x_best} | {x_nlp} | {x_hf} | "
              f"{100 * r['roofline_share']:.0f}% of {r['roofline_of']} | "
              f"{lats} | {r['max_abs_diff_vs_ours_fp32_paddle']:.2g} |")
    print("\nper precision, ours (engine=\"auto\") against the best peer of that precision:\n"
          "| precision | ours | seq/s | best peer | seq/s | ratio | " +
          " | ".join(f"batch-1 x {n_tok}: ours / fastest peer (ms) | ratio" for n_tok in lat) + " |\n|" +
          "---|" * (6 + 2 * len(lat)))
    for precision, x in summary.items():
        ours_row, best_row = rows[x["ours"]], rows[x["best_peer"]]
        print(f"| {precision} | {x['ours']} | {ours_row['seq_per_s']:.1f} | {x['best_peer']} | "
              f"{best_row['seq_per_s']:.1f} | {x['x_best_peer']:.2f}x | " + " | ".join(
                  f"{ours_row['latency_ms_p50'][n_tok]:.2f} / {rows[x['fastest_batch1_peer'][n_tok]]['latency_ms_p50'][n_tok]:.2f} "
                  f"({x['fastest_batch1_peer'][n_tok]}) | {x['batch1_latency_x_fastest_peer'][n_tok]:.2f}x"
                  for n_tok in lat) + " |")
    print(f"roofline share: matmul FLOPs / time / GEMM peak = the faster median of {GEMM_DEPTH} chained "
          f"[{GEMM_M}x{GEMM_K}] x [{GEMM_K}x{GEMM_K}] matmuls timed in the same rounds: " +
          ", ".join(f"{name} {v:.0f} GFLOP/s" for name, v in gemm_rates.items()))

    record = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "model": args.model,
              "model_dir": args.model_dir, "batch_size": args.batch_size, "seq_len": args.seq_len,
              "threads": threads, "rounds": rounds, "latency_rounds": latency_rounds, **machine_record(), "per_precision": summary,
              "loadavg_throughput": load_tp, "loadavg_latency": load_lat, "gemm_peak_gflops": peak, "gemm_gflops": gemm_rates,
              "gflop_per_batch": flops / 1e9, "engines": rows, "versions": _versions(),
              "python": platform.python_version()}
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        print(f"appended to {args.output}")
    return record


def _versions():
    from importlib import metadata
    out = {}
    for pkg in ("paddlepaddle", "paddlenlp", "torch", "transformers", "onnxruntime", "openvino", "paddle2onnx"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
