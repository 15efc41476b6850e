"""What the trainer's processes share (paddle.distributed.fleet, collective mode): the strategy
fleet starts with, the RTD module wrapped for data parallelism or sharding, the optimizer state a
sharded run gathers for its checkpoint, and the parameter checksum that shows the processes agree."""
from __future__ import annotations

import hashlib
from typing import Dict


def strategy(config, world: int):
    """The DistributedStrategy of a run of `config` (a PretrainConfig) over `world` processes."""
    from paddle.distributed import fleet
    s = fleet.DistributedStrategy()
    if config.sharding_stage == 1:  # every process one shard of the optimizer states; no other parallelism
        s.hybrid_configs = {"dp_degree": 1, "mp_degree": 1, "pp_degree": 1, "sharding_degree": world}
    # These record the run's choices in the strategy, as the launcher's users expect; in dygraph,
    # fleet applies none of them itself, so the trainer implements each one (auto_cast,
    # recompute of the encoder layers, accumulation with no_sync); sharding (hybrid_configs) it does.
    s.amp = config.amp != "off"
    s.recompute = config.recompute
    if config.gradient_accumulation_steps > 1:
        s.gradient_merge = True
        s.gradient_merge_configs = {"k_steps": config.gradient_accumulation_steps, "avg": False}
    return s


def wrap(rtd, optimizer, scaler, sharding_stage: int, world: int):
    """(what the step calls, what steps, the GradScaler): the RTD module and the optimizer as they
    are on one process, fleet's data-parallel model (and sharding optimizer for stage 1), or
    group_sharded_parallel's three for stage 2. The optimizer itself keeps holding the state."""
    if sharding_stage == 2:
        from paddle.distributed.sharding import group_sharded_parallel
        return group_sharded_parallel(rtd, optimizer, level="os_g", scaler=scaler)
    if world == 1:
        return rtd, optimizer, scaler
    from paddle.distributed import fleet
    model = fleet.distributed_model(rtd)
    stepper = fleet.distributed_optimizer(optimizer) if sharding_stage == 1 else optimizer
    return model, stepper, scaler


def gather_optimizer_state(state: Dict, rank: int, sharding_stage: int) -> Dict:
    """The union of the processes' optimizer states (each holds the state of its own parameters when
    sharded): the same state an unsharded run saves."""
    import paddle
    import paddle.distributed as dist
    mine = ({k: v.numpy() for k, v in state.items() if hasattr(v, "numpy")},
            {k: v.numpy() for k, v in state.get("master_weights", {}).items()})
    parts = []
    dist.all_gather_object(parts, mine)
    merged = {k: paddle.to_tensor(v) for tensors, _ in parts for k, v in tensors.items()}
    n_own, n_all = (sum(k.endswith("_moment1_0") for k in d) for d in (mine[0], merged))
    print(f"rank {rank}: holds the optimizer state of {n_own} of {n_all} parameters "
          f"(sharding stage {sharding_stage})", flush=True)
    master = {k: paddle.to_tensor(v) for _, m in parts for k, v in m.items()}
    if master:
        merged["master_weights"] = master
    return merged


def params_md5(layer) -> str:
    """md5 of every parameter's bytes: equal on all processes when data parallelism is right."""
    h = hashlib.md5()
    for name, p in sorted(layer.state_dict().items()):
        h.update(name.encode())
        h.update(p.numpy().tobytes())
    return h.hexdigest()
