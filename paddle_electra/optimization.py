"""The original ELECTRA optimizer and schedule (model/optimization.py of google-research/electra),
shared by pretraining and fine-tuning.

- lr(t) = base * (1 - min(t, T)/T)^power * min(1, t/W): TF's polynomial_decay to 0 times a linear
  warmup, a product (not a switch), evaluated at the step count *before* the update, so the very
  first update has lr 0 when W > 0, as in the original.
- AdamW with beta1 0.9, beta2 0.999, eps 1e-6 and NO bias correction:
  m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m / (sqrt(v) + eps) + wd * p),
  the weight decay skipped for parameters whose name contains LayerNorm, layer_norm or bias.
- Gradients clipped to global norm 1.0 first (each shared tensor counted once).
- Per-parameter lr multipliers (not in the original): `lr_multiplier(name)`, e.g. a slower generator in
  pretraining (`--generator-lr-multiplier`), multiplied with the layerwise ratio.
- Layerwise LR decay (fine-tuning): multiplier decay^(n + 2 - depth) with embeddings at depth 0,
  encoder layer i at depth i + 1 and the task head at n + 2, so the top encoder layer gets decay^2
  (the original's quirk); `corrected=True` puts the head at n + 1.

Paddle's fused `adamw_` kernel does exactly this update when its beta1_pow / beta2_pow accumulators
are 0 (it scales lr by sqrt(1 - beta2_pow) / (1 - beta1_pow) and eps by sqrt(1 - beta2_pow), and
multiplies the pows by beta each step, so 0 stays 0); its decoupled decay p *= 1 - lr * wd before
the Adam step gives the same p - lr * (adam + wd * p). `ElectraAdamW` starts those accumulators at 0
and takes per-parameter lr multipliers itself, because AdamW's own `lr_ratio` is GPU-only.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, Optional, Sequence

import paddle

from .paddle_compat import ADAMW_BETA_POW_ACCUMULATORS, HookedAdamW

NO_DECAY = ("LayerNorm", "layer_norm", "bias")


class WarmupPolynomialDecay(paddle.optimizer.lr.LRScheduler):
    """base * (1 - min(t, T)/T)^power * min(1, t/W); W = 0 means no warmup."""

    def __init__(self, learning_rate: float, num_train_steps: int, warmup_steps: int = 0,
                 power: float = 1.0, last_epoch: int = -1):
        if num_train_steps <= 0:
            raise ValueError(f"num_train_steps must be positive, got {num_train_steps}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.num_train_steps, self.warmup_steps, self.power = num_train_steps, warmup_steps, power
        super().__init__(learning_rate, last_epoch)

    def get_lr(self):
        t = max(0, self.last_epoch)
        decay = (1.0 - min(t, self.num_train_steps) / self.num_train_steps) ** self.power
        warm = min(1.0, t / self.warmup_steps) if self.warmup_steps else 1.0
        return self.base_lr * decay * warm


def warmup_polynomial_decay(learning_rate: float, num_train_steps: int, warmup_steps: int,
                            power: float = 1.0) -> paddle.optimizer.lr.LRScheduler:
    return WarmupPolynomialDecay(learning_rate, num_train_steps, warmup_steps, power)


_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def layer_depth(name: str, num_hidden_layers: int, corrected: bool = False) -> int:
    if "electra.embeddings" in name or "embeddings_project" in name:
        return 0
    m = _LAYER.search(name)
    if m:
        return int(m.group(1)) + 1
    return num_hidden_layers + (1 if corrected else 2)


def layerwise_lr_ratios(param_names: Iterable[str], num_hidden_layers: int, decay: float,
                        corrected: bool = False) -> Dict[str, float]:
    """name -> lr multiplier decay ** (top - depth), top = n + 2 (original) or n + 1 (corrected)."""
    top = num_hidden_layers + (1 if corrected else 2)
    out = {}
    for name in param_names:
        depth = layer_depth(name, num_hidden_layers, corrected)
        if depth > top:
            raise ValueError(f"parameter {name} sits in encoder layer {depth - 1} but the model has "
                             f"{num_hidden_layers} layers")
        out[name] = float(decay ** (top - depth))
    return out


def use_weight_decay(name: str) -> bool:
    return not any(k in name for k in NO_DECAY)


class ElectraAdamW(HookedAdamW):
    """Paddle's fused AdamW without bias correction, with per-parameter lr multipliers
    (`lr_ratios`: internal parameter name -> multiplier; missing means 1)."""

    _POWS = ADAMW_BETA_POW_ACCUMULATORS

    def __init__(self, *args, lr_ratios: Optional[Dict[str, float]] = None,
                 param_names: Optional[Dict[str, str]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._electra_lr_ratios = dict(lr_ratios or {})
        # internal name (linear_3.w_0, which depends on creation order) -> structured model name
        self._electra_names = dict(param_names or {})

    def accumulator_initial_value(self, name, default):
        # 0 -> the kernel's bias correction factors are exactly 1, forever
        return 0.0 if name in self._POWS else default

    def parameter_lr(self, param, lr):
        ratio = self._electra_lr_ratios.get(param.name, 1.0)
        return lr if ratio == 1.0 else lr * ratio

    def set_state_dict(self, state_dict):
        # a state saved by a bias-correcting AdamW would silently change the update; refuse it
        for k, v in state_dict.items():
            if any(k.endswith(p + "_0") for p in self._POWS):
                val = float(v.numpy().reshape(-1)[0]) if hasattr(v, "numpy") else float(v)
                if val != 0.0:
                    raise ValueError(f"optimizer state {k} = {val}: not a state of ElectraAdamW "
                                     f"(its beta pow accumulators are always 0)")
        return super().set_state_dict(state_dict)

    # Paddle keys optimizer state by internal parameter names, which change with the order in which
    # layers were created; checkpoints use the model's structured names instead.
    def named_state_dict(self) -> Dict:
        out = {}
        for k, v in self.state_dict().items():
            if k == "master_weights":  # AMP O2: {internal parameter name: fp32 tensor}
                out[k] = {self._electra_names.get(n, n): w for n, w in v.items()}
                continue
            internal = self._owner(k)
            out[k if internal is None else self._electra_names[internal] + k[len(internal):]] = v
        return out

    def set_named_state_dict(self, state: Dict):
        to_internal = {v: k for k, v in self._electra_names.items()}
        converted = {}
        for k, v in state.items():
            if k == "master_weights":
                converted[k] = {to_internal.get(n, n): w for n, w in v.items()}
                continue
            structured = max((n for n in to_internal if k.startswith(n + "_")), key=len, default=None)
            converted[k if structured is None else to_internal[structured] + k[len(structured):]] = v
        expected = len(self._electra_names)
        got = {to_internal[n] for n in to_internal if any(k.startswith(n + "_moment1") for k in state)}
        if len(got) != expected:
            missing = sorted(n for i, n in self._electra_names.items() if i not in got)
            raise ValueError(f"optimizer state has no moments for {len(missing)} parameters, e.g. {missing[:3]}")
        self.set_state_dict(converted)

    def _owner(self, key: str) -> Optional[str]:
        return max((n for n in self._electra_names if key.startswith(n + "_")), key=len, default=None)


def create_optimizer(model, learning_rate: float, num_train_steps: int, warmup_steps: int,
                     weight_decay: float = 0.01, layerwise_lr_decay: Optional[float] = None,
                     lr_decay_power: float = 1.0, clip_norm: Optional[float] = 1.0, epsilon: float = 1e-6,
                     corrected_layer_depth: bool = False, parameters: Optional[Sequence] = None,
                     num_hidden_layers: Optional[int] = None,
                     lr_multiplier: Optional[Callable[[str], float]] = None):
    """(optimizer, scheduler) as the original's create_optimizer. Call `scheduler.step()` after each
    `optimizer.step()`. `parameters` restricts training to a subset of the model's parameters.
    `lr_multiplier(structured name)` scales each parameter's lr (times the layerwise ratio); a shared
    tensor is asked under its first name (`model.named_parameters()`)."""
    scheduler = warmup_polynomial_decay(learning_rate, num_train_steps, warmup_steps, lr_decay_power)
    named = list(model.named_parameters())  # each shared tensor once, under its first name
    if parameters is not None:
        wanted = {id(p) for p in parameters}
        unknown = len(wanted) - len({id(p) for _, p in named} & wanted)
        if unknown:
            raise ValueError(f"{unknown} of the given parameters do not belong to the model")
        named = [(n, p) for n, p in named if id(p) in wanted]
    named = [(n, p) for n, p in named if not p.stop_gradient]
    if not named:
        raise ValueError("no trainable parameters")
    decay_ids = {p.name for n, p in named if use_weight_decay(n)}
    ratios = {}
    if layerwise_lr_decay is not None:
        n_layers = num_hidden_layers
        if n_layers is None:
            n_layers = model.config.num_hidden_layers
        by_name = layerwise_lr_ratios([n for n, _ in named], n_layers, layerwise_lr_decay,
                                      corrected=corrected_layer_depth)
        ratios = {p.name: by_name[n] for n, p in named}
    if lr_multiplier is not None:
        for n, p in named:
            m = float(lr_multiplier(n))
            if not m >= 0:
                raise ValueError(f"lr multiplier of {n} must be >= 0, got {m}")
            if m != 1.0:
                ratios[p.name] = ratios.get(p.name, 1.0) * m
    optimizer = ElectraAdamW(
        learning_rate=scheduler, beta1=0.9, beta2=0.999, epsilon=epsilon,
        parameters=[p for _, p in named], weight_decay=weight_decay,
        apply_decay_param_fun=lambda internal_name: internal_name in decay_ids,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(clip_norm) if clip_norm else None,
        lr_ratios=ratios, param_names={p.name: n for n, p in named})
    return optimizer, scheduler
