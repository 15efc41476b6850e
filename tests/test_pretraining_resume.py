"""Resuming pretraining when things went wrong (issue 11 item 7): a corrupt newest checkpoint falls
back to the newest intact one, trainer_state.json errors name the file, changed data is refused,
metrics.jsonl keeps each step once (also without a checkpoint, also after a torn line), SIGTERM
saves before exiting, the fp16 GradScaler state is kept. Tiny config on CPU, one process."""
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from test_pretraining_trainer import PY, ROOT, _args, _env, _losses, _run, _tiny_configs, data_dir  # noqa: F401

STEPS = 4


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):  # noqa: F811
    """A 4-step run with checkpoints at steps 2 and 4, and its loss curve."""
    tmp = str(tmp_path_factory.mktemp("resume"))
    disc, gen = _tiny_configs(tmp, dropout=0.1)
    out = os.path.join(tmp, "run")
    _run(_args(data_dir, out, disc, gen, STEPS, 4))
    return out, disc, gen, _losses(out)


def _copy(finished_run, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(finished_run[0], out)
    return out


def _again(data_dir, out, finished_run, *extra, check=True):  # noqa: F811
    _, disc, gen, _ = finished_run
    r = subprocess.run([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")] +
                       _args(data_dir, out, disc, gen, STEPS, 4) + list(extra),
                       env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def _flip_byte(path, offset_from_end=8):
    with open(path, "r+b") as f:
        f.seek(-offset_from_end, os.SEEK_END)
        b = f.read(1)
        f.seek(-offset_from_end, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x10]))


def _ckpt(out, step):
    return os.path.join(out, "checkpoints", f"checkpoint-{step:08d}")


@pytest.mark.parametrize("damage", ["weight bit flip", "weight bit flip, no file digests", "truncated optimizer"])
def test_corrupt_newest_checkpoint_falls_back_to_the_intact_one(data_dir, finished_run, tmp_path, damage):  # noqa: F811
    out = _copy(finished_run, tmp_path)
    newest = _ckpt(out, STEPS)
    if damage.startswith("weight bit flip"):
        _flip_byte(os.path.join(newest, "model", "model.safetensors"))
        if "no file digests" in damage:  # a checkpoint of an older version: only the parameter checksum catches it
            state_file = os.path.join(newest, "trainer_state.json")
            state = json.load(open(state_file))
            del state["file_md5"]
            json.dump(state, open(state_file, "w"))
    else:
        with open(os.path.join(newest, "optimizer.safetensors"), "r+b") as f:
            f.truncate(os.path.getsize(f.name) // 2)
    # the run had finished; it continues to 6 steps from the newest intact checkpoint (step 2)
    r = _again(data_dir, out, finished_run, "--max-steps", str(STEPS))
    assert f"checkpoint {newest} is not intact" in r.stderr
    assert ("md5" in r.stderr) if damage.startswith("weight") else ("optimizer.safetensors" in r.stderr)
    assert f"resumed from {_ckpt(out, 2)} at step 2" in r.stdout
    got, want = _losses(out), finished_run[3]
    assert sorted(got) == list(range(1, STEPS + 1))
    for s in range(1, STEPS + 1):  # steps 3, 4 trained again from step 2: the same curve
        assert got[s] == want[s], (s, got[s], want[s])


def test_no_intact_checkpoint_is_refused_naming_each_file(data_dir, finished_run, tmp_path):  # noqa: F811
    out = _copy(finished_run, tmp_path)
    for step in (2, STEPS):
        with open(os.path.join(_ckpt(out, step), "trainer_state.json"), "w") as f:
            f.write('{"step": 2, "scheduler": ')  # cut off
    r = _again(data_dir, out, finished_run, check=False)
    assert r.returncode != 0
    for step in (2, STEPS):
        assert os.path.join(_ckpt(out, step), "trainer_state.json") + ": not valid JSON (line 1" in r.stderr
    assert "no intact checkpoint" in r.stderr
    assert os.path.isdir(_ckpt(out, 2)) and os.path.isdir(_ckpt(out, STEPS))  # nothing deleted


def test_changed_data_is_refused_unless_allowed(data_dir, finished_run, tmp_path):  # noqa: F811
    other = str(tmp_path / "other")
    shutil.copytree(data_dir, other)
    index = json.load(open(os.path.join(other, "index.json")))
    index["summary"]["seconds"] += 1  # any change of the data's index: another md5
    json.dump(index, open(os.path.join(other, "index.json"), "w"))
    out = _copy(finished_run, tmp_path)
    r = _again(other, out, finished_run, "--max-steps", str(STEPS + 1), check=False)
    assert r.returncode != 0 and "index.json md5" in r.stderr and "--allow-data-change" in r.stderr
    r = _again(other, out, finished_run, "--max-steps", str(STEPS + 1), "--allow-data-change")
    assert f"resumed from {_ckpt(out, STEPS)}" in r.stdout and "--allow-data-change" in r.stderr
    # --data-ranges changes the order too
    r = _again(data_dir, out, finished_run, "--max-steps", str(STEPS + 2), "--data-ranges", "2", check=False)
    assert r.returncode != 0 and "example ranges" in r.stderr


def test_metrics_of_a_run_killed_before_its_first_checkpoint_are_dropped(data_dir, finished_run, tmp_path):  # noqa: F811
    out = str(tmp_path / "fresh")
    os.makedirs(out)
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:  # steps 1-3 of a run killed before step 4's save
        for s in (1, 2, 3):
            f.write(json.dumps({"loss": 1.0, "step": s}) + "\n")
    _again(data_dir, out, finished_run)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        steps = [json.loads(l)["step"] for l in f]
    assert steps == list(range(1, STEPS + 1))
    assert _losses(out) == finished_run[3]


def test_a_torn_last_metrics_line_does_not_break_a_restart(data_dir, finished_run, tmp_path):  # noqa: F811
    out = _copy(finished_run, tmp_path)
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write('{"loss": 43.2, "mlm_lo')  # a kill during the write
    r = _again(data_dir, out, finished_run, "--max-steps", str(STEPS + 1))
    assert "unreadable line" in r.stderr
    assert sorted(_losses(out)) == list(range(1, STEPS + 2))


def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(data_dir, finished_run, tmp_path):  # noqa: F811
    _, disc, gen, _ = finished_run
    out = str(tmp_path / "term")
    args = _args(data_dir, out, disc, gen, 1000, 4, save=1000)
    p = subprocess.Popen([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")] + args, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # SIGTERM once step 2 was logged
        if os.path.exists(os.path.join(out, "metrics.jsonl")) and max(_losses(out) or {0: 0}) >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    stopped = max(_losses(out))
    assert f"stopped at step {stopped} (SIGTERM" in stdout
    assert os.path.isdir(_ckpt(out, stopped))  # saved at the step it stopped at, not at --save-steps
    r = _run(args[:args.index("--max-steps") + 1] + [str(stopped + 1)] + args[args.index("--max-steps") + 2:])
    assert f"resumed from {_ckpt(out, stopped)} at step {stopped}" in r.stdout


def _enabled_grad_scaler(monkeypatch):
    """A real paddle.amp.GradScaler with loss scaling on: Paddle enables it only on a GPU, so the
    place check is answered as a GPU's while it is built (its state needs no device)."""
    import paddle
    from paddle.amp import grad_scaler

    class _GpuPlace:
        def is_gpu_place(self):
            return True

    class _Tracer:
        _expected_place = _GpuPlace()

    with monkeypatch.context() as m:
        m.setattr(grad_scaler, "_dygraph_tracer", lambda: _Tracer())
        scaler = paddle.amp.GradScaler(init_loss_scaling=1024.0, incr_every_n_steps=7)
    assert scaler.is_enable()
    return scaler


def test_grad_scaler_state_is_saved_and_restored(tmp_path, monkeypatch):
    import paddle
    from paddle_electra.config import ElectraConfig
    from paddle_electra.modeling import ElectraForPreTraining
    from paddle_electra.optimization import create_optimizer
    from paddle_electra.pretraining.checkpoint import load_checkpoint, save_checkpoint
    cfg = ElectraConfig(vocab_size=30, embedding_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=16, max_position_embeddings=16)
    paddle.seed(0)
    model = ElectraForPreTraining(cfg, cfg)
    opt, sched = create_optimizer(model, 1e-3, 10, 0)
    scaler = _enabled_grad_scaler(monkeypatch)
    scaler._scale = paddle.to_tensor(np.array([256.0], np.float32))  # as after overflows and increases
    scaler._incr_count, scaler._decr_count = 5, 1
    for p in model.parameters():  # the moments exist once a step ran
        p.grad = paddle.ones_like(p)
    opt.step()
    path = save_checkpoint(str(tmp_path), 3, model, opt.named_state_dict(), sched, [], {}, keep=2, scaler=scaler)
    assert json.load(open(os.path.join(path, "trainer_state.json")))["grad_scaler"]["scale"] == [256.0]

    fresh = _enabled_grad_scaler(monkeypatch)
    assert float(fresh._scale.numpy()[0]) == 1024.0
    load_checkpoint(path, model, opt, sched, scaler=fresh)
    assert float(fresh._scale.numpy()[0]) == 256.0
    assert (fresh._incr_count, fresh._decr_count, fresh._incr_every_n_steps) == (5, 1, 7)


def test_amp_o2_master_weights_are_saved_and_restored(tmp_path):
    """AMP O2 keeps fp32 master weights in the optimizer (by Paddle's internal parameter names);
    checkpoints store them under the model's names and restore them. On CPU Paddle makes no O2
    model (no half-precision kernels), so the master weights are set as O2 would hold them."""
    import paddle
    from paddle_electra.config import ElectraConfig
    from paddle_electra.io import load_tensors
    from paddle_electra.modeling import ElectraForPreTraining
    from paddle_electra.optimization import create_optimizer
    from paddle_electra.pretraining.checkpoint import load_checkpoint, save_checkpoint
    cfg = ElectraConfig(vocab_size=30, embedding_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=16, max_position_embeddings=16)
    paddle.seed(0)
    model = ElectraForPreTraining(cfg, cfg)
    opt, sched = create_optimizer(model, 1e-3, 10, 0)
    for p in model.parameters():
        p.grad = paddle.ones_like(p)
    opt.step()
    rng = np.random.default_rng(0)
    master = {p.name: rng.standard_normal(p.shape).astype(np.float32) for p in model.parameters()}
    opt._master_weights = {k: paddle.to_tensor(v) for k, v in master.items()}
    path = save_checkpoint(str(tmp_path), 1, model, opt.named_state_dict(), sched, [], {}, keep=2)
    saved = load_tensors(os.path.join(path, "optimizer.safetensors"))
    structured = {p.name: n for n, p in model.named_parameters()}
    for internal, value in master.items():
        np.testing.assert_array_equal(saved["master_weights/" + structured[internal]], value)

    opt2, sched2 = create_optimizer(model, 1e-3, 10, 0)
    load_checkpoint(path, model, opt2, sched2)
    restored = opt2.state_dict()["master_weights"]
    assert sorted(restored) == sorted(master)
    for k, v in master.items():
        np.testing.assert_array_equal(restored[k].numpy(), v)
