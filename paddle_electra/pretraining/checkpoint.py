"""The pretraining run's checkpoint layout, read by the trainer (resume), export and the probes:
OUTPUT_DIR/checkpoints/checkpoint-<step>/ holding trainer_state.json, the pair under model/ and the
optimizer state. Writing it is the trainer's (save_checkpoint)."""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List

from ..io import CheckpointError

CHECKPOINT_PREFIX = "checkpoint-"
STATE_NAME = "trainer_state.json"
MODEL_SUBDIR = "model"


def checkpoint_dirs(output_dir: str) -> List[str]:
    """Complete checkpoints, oldest first (atomic_dir renames a folder only once it is complete)."""
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = re.fullmatch(CHECKPOINT_PREFIX + r"(\d+)", name)
        if m and os.path.exists(os.path.join(root, name, STATE_NAME)):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return [p for _, p in sorted(found)]


def read_state(path: str) -> Dict:
    """trainer_state.json of checkpoint `path`, checked: errors name the file."""
    f = os.path.join(path, STATE_NAME)
    try:
        with open(f, encoding="utf-8") as fh:
            state = json.load(fh)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{f}: cannot read ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{f}: expected a JSON object, got {type(state).__name__}")
    for key, kind in (("step", int), ("scheduler", dict)):
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{f}: field {key!r} is {state.get(key)!r}, expected {kind.__name__}")
    return state
