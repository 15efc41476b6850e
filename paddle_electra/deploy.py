"""`paddle-electra export onnx|paddle-inference MODEL_DIR OUT_DIR`: a self-contained folder to deploy,
made from the predictor's exported graph (paddle_electra.inference.exported_model / onnx_graph):

  onnx:              model.onnx, its outputs named (logits; start_logits, ...; last_hidden_state)
  paddle-inference:  model.json + model.pdiparams (Paddle Inference's PIR program)
  both:              vocab.txt, config.json, label_map.json (classifiers), export.json (inputs, outputs,
                     precision, task, versions), README.md (the model card)

Precision: onnx fp32 (the plain ONNX graph, standard operators) or int8 (ONNX Runtime's dynamic
quantization of the fused graph: runs on ONNX Runtime only); paddle-inference fp32 or bf16 (the same
graph: bf16 is the predictor's oneDNN setting, recorded in export.json). The folder is written whole
in one rename with the modes a plain mkdir / open give (0755 / 0644); an existing OUT_DIR is replaced
only when it is a previous export (or with --overwrite), and a README.md of the user's in it is kept.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
from typing import Dict, List, Optional

from .io import CONFIG_NAME, LABEL_MAP_NAME, MODEL_CARD_NAME, VOCAB_NAME, OutputKind, output_dir

FORMATS = {"onnx": ("fp32", "int8"), "paddle-inference": ("fp32", "bf16")}
EXPORT_META = "export.json"
ONNX_FILE = "model.onnx"
PADDLE_FILES = ("model.json", "model.pdiparams")
# what an export folder holds (a previous one is replaced without --overwrite)
EXPORT_DIR = OutputKind("export folder", (EXPORT_META,),
                        (EXPORT_META, ONNX_FILE, *PADDLE_FILES, VOCAB_NAME, CONFIG_NAME, LABEL_MAP_NAME,
                         MODEL_CARD_NAME, "tokenizer_config.json"))
# the names of the outputs (tasks' spec names; the backbone's sequence output as HF names it)
_RENAMED = {"sequence_output": "last_hidden_state"}
BACKBONE = "backbone"  # --task for the encoder alone (task None)


def output_names(task: Optional[str], config) -> List[str]:
    from .tasks import get_spec, model_settings
    return [_RENAMED.get(n, n) for n in get_spec(task).output_names(model_settings(config))]


def rename_onnx_outputs(model, names: List[str]) -> None:
    """Rename the graph outputs of the ONNX ModelProto `model` to `names` (in order), in every node and
    value_info that refers to them."""
    g = model.graph
    if len(g.output) != len(names):
        raise ValueError(f"the ONNX graph has {len(g.output)} outputs, expected {len(names)} ({', '.join(names)})")
    mapping = {o.name: n for o, n in zip(g.output, names) if o.name != n}
    taken = {x for node in g.node for x in (*node.input, *node.output)} | {i.name for i in g.input} | \
        {t.name for t in g.initializer}
    clash = [n for n in mapping.values() if n in taken]
    if clash:
        raise ValueError(f"the ONNX graph already has tensors named {clash}; cannot rename its outputs")
    for node in g.node:
        for seq in (node.input, node.output):
            for i, x in enumerate(seq):
                if x in mapping:
                    seq[i] = mapping[x]
    for vi in (*g.output, *g.value_info):
        if vi.name in mapping:
            vi.name = mapping[vi.name]


def name_onnx_axes(model, seq_axes: List[Optional[int]]) -> None:
    """Name the dynamic axes of the graph's inputs and outputs "batch" and "sequence" (paddle2onnx leaves
    DynamicDimension.N): axis 0, and the output axis that follows the input length."""
    def name(value_info, axis, label):
        dims = value_info.type.tensor_type.shape.dim
        if axis is not None and axis < len(dims) and not dims[axis].HasField("dim_value"):
            dims[axis].dim_param = label
    for i in model.graph.input:
        name(i, 0, "batch")
        name(i, 1, "sequence")
    for o, axis in zip(model.graph.output, seq_axes):
        name(o, 0, "batch")
        name(o, axis, "sequence")


def _onnx_shapes(model) -> Dict[str, list]:
    out = {}
    for o in model.graph.output:
        dims = o.type.tensor_type.shape.dim
        out[o.name] = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in dims]
    return out


def check_precision(fmt: str, precision: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if precision in FORMATS[fmt]:
        return
    if fmt == "onnx" and precision == "bf16":
        raise ValueError("--precision bf16 is not available for onnx: no engine here runs a bf16 ONNX graph on "
                         "CPU (bf16 is Paddle Inference's oneDNN mode); use `export paddle-inference --precision "
                         "bf16`, or onnx with fp32 / int8")
    if fmt == "paddle-inference" and precision == "int8":
        raise ValueError("--precision int8 is not available for paddle-inference (Paddle's oneDNN int8 needs a "
                         "post-training-quantized program); use `export onnx --precision int8` (ONNX Runtime's "
                         "dynamic int8)")
    raise ValueError(f"--precision {precision!r}: {fmt} takes {' or '.join(FORMATS[fmt])}")


def export_folder(fmt: str, model_dir: str, out_dir: str, task: Optional[str] = "auto", precision: str = "fp32",
                  overwrite: bool = False, command: Optional[str] = None) -> str:
    """Write the deployable folder `out_dir` (module docstring) of the fine-tuned (or backbone, task None)
    model folder `model_dir`. task "auto": the task the folder was fine-tuned for."""
    from . import __version__, inference, model_card
    from .config import ElectraConfig
    from .inference.cache import versions as tool_versions
    from .inference.choice import importable, require
    from .heads import normalize_label_map
    from .resolve import resolve
    from .tasks import get_spec, task_of_config
    from .tokenizer import bundled_vocab_path
    check_precision(fmt, precision)
    model_dir = os.path.abspath(resolve(model_dir))
    cfg_path = os.path.join(model_dir, CONFIG_NAME)
    config = ElectraConfig.from_json_file(cfg_path)
    if task == "auto":
        task = task_of_config(config, cfg_path)
    elif task == BACKBONE:
        task = None
    spec = get_spec(task)
    if fmt == "onnx":
        if precision == "int8":
            require("onnxruntime")  # the quantizer (and paddle2onnx)
        elif not importable("paddle2onnx"):
            raise ImportError("export onnx needs paddle2onnx (pip install paddle2onnx)")
    names = output_names(task, config)
    labels = None
    if spec.labelled:
        extra = config.extra
        labels = normalize_label_map(extra.get("num_labels"), extra.get("id2label"), extra.get("label2id"))
    export_dir, meta = inference.exported_model(model_dir, task)
    kept_card = model_card.user_card(out_dir) if os.path.isdir(out_dir) else None
    versions = tool_versions("paddlepaddle", "paddle2onnx", "onnx", "onnxruntime")
    outputs = [{"name": n, "sequence_axis": a} for n, a in zip(names, meta.get("seq_axes") or [None] * len(names))]
    with output_dir(out_dir, EXPORT_DIR, inputs=[model_dir], overwrite=overwrite) as tmp:
        if fmt == "onnx":
            import onnx
            kind = "int8" if precision == "int8" else "plain"
            try:
                graph = inference.onnx_graph(export_dir, meta, config, kind)
            except ImportError as e:  # e.g. onnxruntime.quantization's own imports (ml_dtypes)
                missing = f"; pip install {e.name}" if getattr(e, "name", None) else ""
                raise ImportError(f"export onnx --precision {precision}: a package it needs cannot be imported "
                                  f"({e}){missing}") from e
            model = onnx.load(graph)
            rename_onnx_outputs(model, names)
            name_onnx_axes(model, [o["sequence_axis"] for o in outputs])
            onnx.checker.check_model(model)
            onnx.save(model, os.path.join(tmp, ONNX_FILE))
            shapes = _onnx_shapes(model)
            for o in outputs:
                o["shape"] = shapes.get(o["name"])
            files = [ONNX_FILE]
            runtime = ("ONNX Runtime (the graph uses its com.microsoft operators)" if kind == "int8"
                       else "any ONNX runtime (standard operators, opset %d)" % inference.ONNX_OPSET)
        else:
            files = list(PADDLE_FILES)
            for f in files:
                shutil.copyfile(os.path.join(export_dir, f), os.path.join(tmp, f))
            runtime = "Paddle Inference" + (" with oneDNN bf16 (Config.enable_onednn_bfloat16; native-bf16 CPUs)"
                                            if precision == "bf16" else "")
        vocab = os.path.join(model_dir, VOCAB_NAME)
        shutil.copyfile(vocab if os.path.exists(vocab) else bundled_vocab_path(), os.path.join(tmp, VOCAB_NAME))
        shutil.copyfile(cfg_path, os.path.join(tmp, CONFIG_NAME))
        files += [VOCAB_NAME, CONFIG_NAME]
        if os.path.exists(os.path.join(model_dir, LABEL_MAP_NAME)):
            shutil.copyfile(os.path.join(model_dir, LABEL_MAP_NAME), os.path.join(tmp, LABEL_MAP_NAME))
            files.append(LABEL_MAP_NAME)
        info = {
            "format": fmt, "precision": precision, "task": task if task is not None else BACKBONE,
            "runtime": runtime, "files": files,
            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in inference.INPUT_NAMES],
            "outputs": outputs,
            "labels": labels,
            "source": model_dir,
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "versions": {"paddle-electra": __version__, **{k: v for k, v in versions.items() if v}},
        }
        with open(os.path.join(tmp, EXPORT_META), "w", encoding="utf-8") as f:
            json.dump(info, f, ensure_ascii=False, indent=2)
            f.write("\n")
        card = model_card.render(
            f"{spec.model_class.__name__ if task else 'ElectraModel'} exported for {fmt} (paddle-electra)",
            {"task": info["task"], "labels": labels, "format": fmt, "precision": precision, "runtime": runtime,
             "inputs": ", ".join(f"{n} (int64 [batch, sequence])" for n in inference.INPUT_NAMES),
             "outputs": ", ".join(o["name"] for o in outputs), "source model": model_dir,
             **_finetuning_fields(config),
             "command": command or model_card.command_line()},
            usage=_usage(fmt, names))
        model_card.write(tmp, card, kept_card)
    return out_dir


def _finetuning_fields(config) -> Dict[str, object]:
    """What the fine-tuning recorded in the source model's config.json (data set and files)."""
    rec = config.extra.get("finetuning") or {}
    if not isinstance(rec, dict):
        return {}
    fields = {f"fine-tuning {k.replace('_', ' ')}": v for k, v in rec.items() if isinstance(v, (str, int, float))}
    if fields:
        fields["scores"] = "see the source model's README.md"
    return fields


def _usage(fmt: str, names: List[str]) -> str:
    if fmt == "onnx":
        return ("import onnxruntime, numpy as np\n"
                "from paddle_electra import ElectraTokenizer\n"
                "tok = ElectraTokenizer.from_pretrained(this_folder)\n"
                "enc = {k: np.array(v, dtype='int64') for k, v in tok(['今天天气不错'], padding=True).items()}\n"
                "sess = onnxruntime.InferenceSession(this_folder + '/model.onnx')\n"
                f"{', '.join(names)}{',' if len(names) == 1 else ''} = sess.run({names!r}, enc)")
    return ("from paddle import inference as pi\n"
            "cfg = pi.Config(this_folder + '/model.json', this_folder + '/model.pdiparams')\n"
            "predictor = pi.create_predictor(cfg)  # inputs input_ids, token_type_ids, attention_mask\n"
            f"# outputs, in order: {', '.join(names)}")


def _add_arguments(fmt):
    def add(p):
        from .pipeline import TASKS
        p.add_argument("model_dir", metavar="MODEL_DIR", help="a fine-tuned model folder (or registered name)")
        p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write")
        p.add_argument("--task", default="auto", choices=("auto", BACKBONE, *TASKS),
                       help="auto (default): the task the folder was fine-tuned for; backbone: the encoder's "
                            "last_hidden_state")
        p.add_argument("--precision", default="fp32", choices=("fp32", "int8", "bf16"),
                       help=f"{' / '.join(FORMATS[fmt])} for {fmt}")
        p.add_argument("--overwrite", action="store_true",
                       help="replace a non-empty OUT_DIR that is not a previous export")
    return add


def _run(fmt):
    def run(args):
        out = export_folder(fmt, args.model_dir, args.out_dir, task=args.task, precision=args.precision,
                            overwrite=args.overwrite)
        print(f"wrote {fmt} ({args.precision}) export of {args.model_dir} to {out}")
        return 0
    return run


# the `export onnx` / `export paddle-inference` add_arguments / run pairs (paddle_electra.cli.EXPORTS)
onnx_add_arguments, onnx_run = _add_arguments("onnx"), _run("onnx")
paddle_inference_add_arguments, paddle_inference_run = _add_arguments("paddle-inference"), _run("paddle-inference")
