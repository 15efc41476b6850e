"""The private-Paddle-API shims (paddle_electra/paddle_compat.py), one test each, plus the version check."""
import json
import warnings

import numpy as np
import paddle
import pytest

from paddle_electra import paddle_compat as compat


def test_installed_paddle_is_supported_and_has_every_private_api():
    assert compat.version_supported(paddle.__version__), paddle.__version__
    assert compat.check_private_apis() == []


@pytest.mark.parametrize("version,ok", [("3.0.0", True), ("3.0.0rc1", True), ("3.3.1", True), ("3.4.0", False),
                                        ("2.6.2", False), ("0.0.0", False), ("garbage", False)])
def test_version_range(version, ok):
    assert compat.version_supported(version) is ok
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compat.check_version(version) is ok
    assert bool(caught) is not ok
    if caught:
        assert version in str(caught[0].message) and ">= 3.0, < 3.4" in str(caught[0].message)


def test_a_missing_private_api_is_named(monkeypatch):
    monkeypatch.setattr(compat, "PRIVATE_APIS", compat.PRIVATE_APIS + (("paddle.base.core", "no_such_thing"),))
    assert compat.check_private_apis() == ["paddle.base.core.no_such_thing"]
    with pytest.raises(compat.PaddleCompatError, match="no paddle.base.core.no_such_thing"):
        compat._need("paddle.base.core", "no_such_thing")


def test_set_math_threads():
    assert compat.set_math_threads(1) == 1
    with pytest.raises(ValueError, match="thread count"):
        compat.set_math_threads(0)


def test_supports_bf16_fast_agrees_with_the_cpu_flags():
    from paddle_electra.inference import cpu_supports_bf16
    native = compat.supports_bf16_fast()
    assert native in (True, False)
    assert cpu_supports_bf16() == native


def test_rng_state_round_trips_through_json():
    paddle.seed(3)
    paddle.rand([5])
    saved = json.loads(json.dumps(compat.rng_state_to_json()))
    want = paddle.rand([7]).numpy()
    paddle.rand([11])  # move on
    compat.rng_state_from_json(saved)
    np.testing.assert_array_equal(paddle.rand([7]).numpy(), want)


def test_hooked_adamw_applies_both_hooks():
    class Zeroed(compat.HookedAdamW):
        def accumulator_initial_value(self, name, default):
            return 0.0 if name in compat.ADAMW_BETA_POW_ACCUMULATORS else default

        def parameter_lr(self, param, lr):
            return lr * 0.0 if param.name == frozen.name else lr

    paddle.seed(0)
    frozen, moving = (paddle.create_parameter([3], "float32") for _ in range(2))
    opt = Zeroed(learning_rate=0.1, parameters=[frozen, moving], weight_decay=0.0)
    before = frozen.numpy().copy(), moving.numpy().copy()
    ((frozen * 2).sum() + (moving * 2).sum()).backward()
    opt.step()
    np.testing.assert_array_equal(frozen.numpy(), before[0])
    assert np.abs(moving.numpy() - before[1]).min() > 0.01
    pows = {k: float(v.numpy().reshape(-1)[0]) for k, v in opt.state_dict().items() if "pow_acc" in k}
    assert pows and set(pows.values()) == {0.0}


def test_no_private_paddle_api_outside_the_shims():
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[1]
    private = re.compile(r"paddle\.base\b|from paddle\.base|libpaddle|_C_ops|paddle\.fluid|"
                         r"_add_accumulator|_create_param_lr|_global_learning_rate")
    offenders = []
    for folder in ("paddle_electra", "benchmarks", "convert", "finetune", "pretrain", "hub_modules"):
        for p in (root / folder).rglob("*.py"):
            if p.name == "paddle_compat.py":
                continue
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if private.search(line):
                    offenders.append(f"{p.relative_to(root)}:{i}: {line.strip()}")
    assert offenders == []
