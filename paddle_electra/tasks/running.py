"""Running a model for a task: the dygraph runner, the output rows a spec decodes, the one prediction
path of the hub module, its serving and the pipeline (`predict`), and the task of a fine-tuned folder."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from ..batching import run_bucketed
from .base import Options, SequenceFeature, TaskSpec
from .registry import SPECS


class DygraphPredictor:
    """The dygraph twin of inference.ElectraPredictor.predict_batches: the same bucketing
    (batching.run_bucketed) over the layer itself, in eval mode without gradients."""

    def __init__(self, model, spec: TaskSpec):
        self.model, self.spec = model, spec

    def _run(self, ids, types, mask):
        self.model.eval()
        with paddle.no_grad():
            out = self.model(paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask))
        return tuple(o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,)))

    def predict_batches(self, input_ids, token_type_ids=None, batch_size: int = 32, pad_multiple: int = 1):
        """As ElectraPredictor's: per sequence an array, or a tuple of arrays for several outputs."""
        out = run_bucketed(self._run, input_ids, token_type_ids, batch_size, pad_id=self.model.config.pad_token_id,
                           pad_multiple=pad_multiple, seq_axes=self.spec.seq_axes(self.model))
        return [r[0] if len(r) == 1 else r for r in out]


def output_rows(spec: TaskSpec, model, outputs: Sequence) -> List[Dict[str, np.ndarray]]:
    """predict_batches' results (an array or a tuple of arrays per feature) -> {output name: array}.
    `model`: the model (its settings name the outputs) or the config of its folder (model_settings)."""
    names = spec.output_names(model)
    return [dict(zip(names, o if isinstance(o, tuple) else (o,))) for o in outputs]


def model_settings(config) -> Any:
    """What `outputs(model)` reads of a model, from the ElectraConfig of its folder (a predictor has no
    dygraph model): the QA head's saved `qa_simple` / `qa_beam_size`."""
    extra = getattr(config, "extra", {}) or {}
    return SimpleNamespace(config=config, simple=bool(extra.get("qa_simple", False)),
                           beam_size=int(extra.get("qa_beam_size", 20)))


def predict(spec: TaskSpec, tokenizer, predictor, model, texts: Sequence[Sequence[str]], max_seq_length: int,
            batch_size: int, labels: Optional[Sequence[str]] = None,
            options: Optional[Options] = None) -> Tuple[List, bool]:
    """The one prediction path of the hub module, its serving and paddle_electra.pipeline: PaddleHub-style
    examples `[[text_a(, text_b)], ...]` encoded (windows included), run grouped by length by `predictor`
    (an ElectraPredictor or DygraphPredictor), decoded by `spec.decode` -> (one prediction per example,
    whether any text was truncated). `model`: the model or model_settings(config) (names the outputs);
    `options`: the spec's (spec.options(...)), None for its defaults."""
    examples = [spec.example(t, options) for t in texts]
    feats = spec.encode(tokenizer, examples, max_seq_length, options=options)
    truncated = any(isinstance(f, SequenceFeature) and f.truncated for f in feats)
    outs = predictor.predict_batches([f.input_ids for f in feats], [f.token_type_ids for f in feats],
                                     batch_size=batch_size) if feats else []
    return spec.decode(examples, feats, output_rows(spec, model, outs), labels=labels, options=options), truncated


# the architectures of config.json -> the task a fine-tuned folder is for (config's "finetuning_task" first)
_ARCHITECTURE_TASKS = {"ElectraForSequenceClassification": "seq-cls", "ElectraForTokenClassification": "token-cls",
                       "ElectraForQuestionAnswering": "reading-comprehension"}
FINETUNING_TASK_KEY = "finetuning_task"  # HF's config field; written by fine-tuning


def task_of_config(config, source: str = "config.json") -> str:
    """The task a fine-tuned model folder is for, from its config: `finetuning_task` (written by
    `paddle-electra finetune`), else its architecture's task (a classifier: seq-cls)."""
    extra = getattr(config, "extra", {}) or {}
    task = extra.get(FINETUNING_TASK_KEY)
    if isinstance(task, str) and task in SPECS:
        return task
    arch = extra.get("architectures") or []
    for a in arch:
        if a in _ARCHITECTURE_TASKS:
            return _ARCHITECTURE_TASKS[a]
    raise ValueError(f"{source}: not a fine-tuned model (architectures {arch or 'not given'}, no "
                     f"{FINETUNING_TASK_KEY!r}); fine-tune it first, or name the task (one of "
                     f"{', '.join(sorted(_ARCHITECTURE_TASKS.values()))})")
