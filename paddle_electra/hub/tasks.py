"""What the PaddleHub module adds to the task specs of paddle_electra.tasks, in one table keyed by task
name: the tasks it serves (HUB_TASKS; PaddleHub 2.0's names in ALIASES), the positional layouts of
PaddleHub's training batches, what `forward` returns (probabilities for classifiers), the per-batch
numbers hub.Trainer logs (PaddleHub's names), and which of the module's settings are the spec's options."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import paddle
import paddle.nn.functional as F

from ..tasks import IGNORE_INDEX, TaskSpec, TokenClassification, get_spec, unknown_task

logger = logging.getLogger("paddle_electra.hub")


def _same(outputs):
    return outputs


def _probabilities(outputs):
    return F.softmax(outputs, axis=-1)


def _score(outputs):
    return outputs[:, 0]


def _accuracy(outputs, batch, labels, options) -> Dict[str, float]:
    hit = outputs.argmax(axis=-1) == batch["labels"].reshape([-1]).astype("int64")
    return {"acc": float(hit.astype("float32").mean())}


def _mse(outputs, batch, labels, options) -> Dict[str, float]:
    return {"mse": float(F.mse_loss(outputs[:, 0], batch["labels"].reshape([-1]).astype(outputs.dtype)))}


def _chunk_f1(outputs, batch, labels, options) -> Dict[str, float]:
    """Entity F1 of one batch (PaddleNLP's ChunkEvaluator, as PaddleHub); ignored positions count as
    outside any entity."""
    from paddlenlp.metrics import ChunkEvaluator
    outside = len(labels)  # an extra id meaning "O" at ignored positions
    lab = TokenClassification.training_labels(outputs, batch, options.ignore_label).numpy()
    pred = outputs.argmax(axis=-1).numpy()
    pred[lab == IGNORE_INDEX] = outside
    lab[lab == IGNORE_INDEX] = outside
    metric = ChunkEvaluator(label_list=list(labels) + ["O"], suffix=options.suffix)
    lengths = batch["attention_mask"].astype("int64").sum(axis=-1).numpy()
    n_infer, n_label, n_correct = metric.compute(lengths=lengths, predictions=paddle.to_tensor(pred),
                                                 labels=paddle.to_tensor(lab))
    metric.update(n_infer.numpy(), n_label.numpy(), n_correct.numpy())
    return {"f1_score": float(metric.accumulate()[2])}


def _span_accuracy(outputs, batch, labels, options) -> Dict[str, float]:
    sp = batch["start_positions"].reshape([-1]).astype("int64")
    ep = batch["end_positions"].reshape([-1]).astype("int64")
    hit = (outputs[0].argmax(axis=-1) == sp) & (outputs[1].argmax(axis=-1) == ep)
    return {"span_acc": float(hit.astype("float32").mean())}


@dataclass(frozen=True)
class HubTask:
    """A task as the PaddleHub module serves it (its spec: paddle_electra.tasks.get_spec(name))."""
    fields: Tuple[Tuple[str, ...], ...] = ()  # PaddleHub's positional training batch layout(s)
    head_output: Callable = _same             # what forward returns for the model outputs
    batch_metrics: Optional[Callable] = None  # (outputs, batch, labels, options) -> hub.Trainer's numbers
    options: Tuple[str, ...] = ()             # the module's settings that are the spec's options


_CLASSIFIED = (("input_ids", "token_type_ids", "labels"),)

HUB_TASKS: Dict[Optional[str], HubTask] = {
    None: HubTask(options=("pooling",)),
    "seq-cls": HubTask(_CLASSIFIED, _probabilities, _accuracy),
    # PaddleHub's LCQMC layout: the two texts encoded apart (the module joins them), or one pair
    "text-matching": HubTask((("query_input_ids", "query_token_type_ids", "title_input_ids", "title_token_type_ids",
                               "labels"),) + _CLASSIFIED, _probabilities, _accuracy),
    "text-regression": HubTask(_CLASSIFIED, _score, _mse),
    "token-cls": HubTask((("input_ids", "token_type_ids", "seq_lengths", "labels"),), _probabilities, _chunk_f1,
                         options=("split_char", "suffix", "ignore_label")),
    "reading-comprehension": HubTask((("input_ids", "token_type_ids", "start_positions", "end_positions"),),
                                     batch_metrics=_span_accuracy),
}
ALIASES = {"sequence_classification": "seq-cls", "token_cls": "token-cls"}  # PaddleHub 2.0's spellings


def hub_task(task: Optional[str]) -> Tuple[TaskSpec, HubTask]:
    """(spec, HubTask) of a task of the module (a PaddleHub 2.0 name is accepted with a warning); another
    name: ValueError naming the choices."""
    if isinstance(task, str) and task in ALIASES:
        logger.warning("task %r is PaddleHub 2.0's name; use %r", task, ALIASES[task])
        task = ALIASES[task]
    if not (task is None or isinstance(task, str)) or task not in HUB_TASKS:
        raise unknown_task(task, tuple(HUB_TASKS))
    return get_spec(task), HUB_TASKS[task]
