"""The pretraining trainer end to end on a tiny config (CPU): SIGKILL + resume reproduces the loss
curve, 2 processes (gloo) keep identical parameters and match 1 process with the doubled batch,
export pretraining writes a dir every model class loads, --init-from continues from it."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
CONFIGS = os.path.join(ROOT, "pretrain", "configs")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PADDLE_ELECTRA_NUM_THREADS"] = "1"  # small runs: no thread contention between processes
    env.pop("PADDLE_TRAINERS_NUM", None)
    return env


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pt")
    with open(os.path.join(ROOT, "demo_data", "corpus_sample.txt"), encoding="utf-8") as f:
        lines = [next(f) for _ in range(300)]
    (d / "text.txt").write_text("".join(lines), encoding="utf-8")
    subprocess.run([PY, os.path.join(ROOT, "pretrain", "build_pretraining_dataset.py"), "--input",
                    str(d / "text.txt"), "--output-dir", str(d / "data"), "--max-seq-length", "32",
                    "--num-processes", "1"], check=True, env=_env(), capture_output=True)
    return str(d / "data")


def _tiny_configs(tmp, dropout):
    out = []
    for name in ("tiny_discriminator.json", "tiny_generator.json"):
        with open(os.path.join(CONFIGS, name)) as f:
            cfg = json.load(f)
        cfg["hidden_dropout_prob"] = cfg["attention_probs_dropout_prob"] = dropout
        p = os.path.join(tmp, name)
        with open(p, "w") as f:
            json.dump(cfg, f)
        out.append(p)
    return out


def _args(data_dir, out, disc, gen, steps, batch, save=2):
    return ["--data-dir", data_dir, "--discriminator-config", disc, "--generator-config", gen,
            "--output-dir", out, "--max-steps", str(steps), "--train-batch-size", str(batch),
            "--warmup-steps", "2", "--learning-rate", "1e-3", "--logging-steps", "1", "--save-steps", str(save),
            "--no-progress", "--device", "cpu"]


def _losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


def _run(args, **kw):
    r = subprocess.run([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")] + args, env=_env(),
                       capture_output=True, text=True, **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_sigkill_and_resume_gives_the_same_loss_curve(data_dir, tmp_path):
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.1)  # dropout on: its RNG state must resume too
    steps = 8
    ref = str(tmp_path / "ref")
    _run(_args(data_dir, ref, disc, gen, steps, 4))
    want = _losses(ref)
    assert sorted(want) == list(range(1, steps + 1))

    out = str(tmp_path / "killed")
    p = subprocess.Popen([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")] + _args(data_dir, out, disc, gen, steps, 4),
                         env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt5 = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline:  # kill after step 5 was logged (checkpoint 4 exists, 6 does not)
        if os.path.exists(ckpt5) and max(_losses(out) or {0: 0}) >= 5:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = max(_losses(out))
    assert killed_at < steps, "the run finished before it could be killed"
    r = _run(_args(data_dir, out, disc, gen, steps, 4))
    assert "resumed from" in r.stdout
    got = _losses(out)
    assert sorted(got) == list(range(1, steps + 1))
    for s in range(1, steps + 1):
        assert got[s] == want[s], (s, got[s], want[s])
    ckpts = sorted(os.listdir(os.path.join(out, "checkpoints")))
    assert ckpts == ["checkpoint-00000004", "checkpoint-00000006", "checkpoint-00000008"]  # keep the last 3


def _launch(args, log_dir):
    cmd = [PY, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", log_dir,
           os.path.join(ROOT, "pretrain", "run_pretraining.py")] + args
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        logs = "".join(open(os.path.join(log_dir, f)).read()[-2000:] for f in sorted(os.listdir(log_dir)))
        raise AssertionError(f"launch failed:\n{r.stdout[-2000:]}\n{logs}")
    return r


@pytest.mark.slow  # kept out of the default run's 10 minutes (make test-all runs it)
def test_two_processes_match_one_process_with_doubled_batch(data_dir, tmp_path):
    from paddle_electra.io import load_tensors
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    steps = 4
    two = str(tmp_path / "two")
    _launch(_args(data_dir, two, disc, gen, steps, 2, save=steps), str(tmp_path / "log"))
    one = str(tmp_path / "one")  # the 2 processes read 2 example ranges: the same order for 1 process
    _run(_args(data_dir, one, disc, gen, steps, 4, save=steps) + ["--data-ranges", "2"])

    ck = os.path.join("checkpoints", f"checkpoint-{steps:08d}")
    state = json.load(open(os.path.join(two, ck, "trainer_state.json")))
    assert state["world_size"] == 2 and len(state["param_checksums"]) == 2
    assert state["param_checksums"][0] == state["param_checksums"][1]  # identical on both ranks

    l1, l2 = _losses(one), _losses(two)
    for s in range(1, steps + 1):
        assert l2[s] == pytest.approx(l1[s], rel=1e-4)
    for f in ("model.safetensors", "generator.safetensors"):
        a = load_tensors(os.path.join(one, ck, "model", f))
        b = load_tensors(os.path.join(two, ck, "model", f))
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=2e-6, err_msg=k)


def test_export_and_init_from(data_dir, tmp_path):
    from paddle_electra.cli import main
    from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining, ElectraGenerator
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    run = str(tmp_path / "run")
    _run(_args(data_dir, run, disc, gen, 2, 2))
    out = str(tmp_path / "export")
    assert main(["export", "pretraining", run, out]) == 0
    assert sorted(os.listdir(out)) == ["config.json", "generator.safetensors", "generator_config.json",
                                       "model.safetensors", "vocab.txt"]
    d = ElectraDiscriminator.from_pretrained(out)
    g = ElectraGenerator.from_pretrained(out)
    both = ElectraForPreTraining.from_pretrained(out)
    assert d.config.hidden_size == 64 and g.config.hidden_size == 16
    np.testing.assert_array_equal(both.generator.electra.embeddings.word_embeddings.weight.numpy(),
                                  d.electra.embeddings.word_embeddings.weight.numpy())
    # continue pretraining from the export: step 0 starts from exactly those weights
    cont = str(tmp_path / "cont")
    _run(["--data-dir", data_dir, "--init-from", out, "--output-dir", cont, "--max-steps", "1",
          "--train-batch-size", "2", "--warmup-steps", "1", "--no-progress", "--device", "cpu"])
    # lr is 0 at step 0 (warmup): the saved weights equal the exported ones
    again = ElectraForPreTraining.from_pretrained(os.path.join(cont, "checkpoints", "checkpoint-00000001", "model"))
    for (k, a), (_, b) in zip(sorted(both.state_dict().items()), sorted(again.state_dict().items())):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    # held-out evaluation of the export: deterministic, every example once
    results = []
    for i in range(2):
        ev = str(tmp_path / f"eval{i}")
        _run(["--eval-only", "--data-dir", data_dir, "--eval-data-dir", data_dir, "--init-from", out,
              "--output-dir", ev, "--train-batch-size", "8", "--eval-batches", "3", "--device", "cpu"])
        results.append(json.load(open(os.path.join(ev, "eval_results.json"))))
    assert results[0] == results[1]
    assert results[0]["examples"] == 24 and 0 <= results[0]["mlm_accuracy"] <= 1
    from paddle_electra.pretraining.export import export
    with pytest.raises(Exception, match="no complete checkpoint"):
        export(str(tmp_path), str(tmp_path / "x"))
    assert main(["export", "pretraining", str(tmp_path), str(tmp_path / "x")]) == 1  # the CLI: one line, exit 1


def test_gradient_accumulation_and_recompute_match_the_full_batch(data_dir, tmp_path):
    from paddle_electra.io import load_tensors
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    full = str(tmp_path / "full")
    _run(_args(data_dir, full, disc, gen, 2, 4))
    acc = str(tmp_path / "acc")
    _run(_args(data_dir, acc, disc, gen, 2, 2) + ["--gradient-accumulation-steps", "2", "--recompute"])
    l1, l2 = _losses(full), _losses(acc)
    assert l2[1] == pytest.approx(l1[1], rel=1e-5) and l2[2] == pytest.approx(l1[2], rel=1e-4)
    ck = os.path.join("checkpoints", "checkpoint-00000002", "model", "model.safetensors")
    a, b = load_tensors(os.path.join(full, ck)), load_tensors(os.path.join(acc, ck))
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=2e-6, err_msg=k)


@pytest.mark.slow  # kept out of the default run's 10 minutes (make test-all runs it)
def test_sharding_stage1_matches_one_process_and_resumes(data_dir, tmp_path):
    """--sharding-stage 1 (fleet hybrid sharding: each of 2 gloo processes holds half of the
    optimizer states): the same losses as one process with the doubled batch, a checkpoint holding
    the whole optimizer state (equal to the unsharded run's), and a resume from it."""
    from paddle_electra.io import load_tensors
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    steps = 4
    sharded = str(tmp_path / "sharded")
    args = _args(data_dir, sharded, disc, gen, steps, 2, save=2) + ["--sharding-stage", "1"]
    _launch(args, str(tmp_path / "log"))
    one = str(tmp_path / "one")
    _run(_args(data_dir, one, disc, gen, steps, 4, save=2) + ["--data-ranges", "2"])
    l1, l2 = _losses(one), _losses(sharded)
    for s in range(1, steps + 1):
        assert l2[s] == pytest.approx(l1[s], rel=1e-4)
    ck = os.path.join("checkpoints", f"checkpoint-{steps:08d}", "optimizer.safetensors")
    a, b = load_tensors(os.path.join(one, ck)), load_tensors(os.path.join(sharded, ck))
    assert sorted(a) == sorted(b)
    held = []
    for rank in range(2):  # each process held only its part of the state
        log = open(os.path.join(str(tmp_path / "log"), f"workerlog.{rank}")).read()
        m = re.search(r"rank %d: holds the optimizer state of (\d+) of (\d+) parameters" % rank, log)
        held.append((int(m.group(1)), int(m.group(2))))
    total = sum(k.endswith("_moment1_0") for k in a)
    assert all(0 < own < total and n == total for own, n in held) and sum(o for o, _ in held) == total, held
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-3, atol=1e-7, err_msg=k)
    # resume the sharded run from its step-2 checkpoint: steps 3 and 4 again, the same losses
    shutil.rmtree(os.path.join(sharded, "checkpoints", f"checkpoint-{steps:08d}"))
    r = _launch(args, str(tmp_path / "log2"))
    assert "resumed from" in open(os.path.join(str(tmp_path / "log2"), "workerlog.0")).read()
    l3 = _losses(sharded)
    assert sorted(l3) == list(range(1, steps + 1))
    for s in range(1, steps + 1):
        assert l3[s] == pytest.approx(l2[s], rel=1e-5)


def test_large_model_options_refused_where_they_cannot_run(data_dir, tmp_path):
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    base = _args(data_dir, str(tmp_path / "x"), disc, gen, 1, 2)
    for extra, message in ((["--sharding-stage", "2"], "--sharding-stage 2 needs GPUs"),
                           (["--sharding-stage", "1"], "needs several processes"),
                           (["--amp", "fp16", "--amp-level", "O2"], "--amp fp16 needs a GPU"),
                           (["--amp-level", "O2"], "--amp-level O2 needs --amp")):
        r = subprocess.run([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")] + base + extra, env=_env(),
                           capture_output=True, text=True)
        assert r.returncode != 0 and message in r.stderr, (extra, r.stderr[-2000:])


def _limited_address_space(limit):
    import resource

    def set_limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return set_limit


@pytest.mark.slow  # kept out of the default run's 10 minutes (make test-all runs it)
def test_a_corpus_larger_than_the_address_space_trains(data_dir, tmp_path):
    """A 3.6 GB corpus trains in a process limited to 3 GiB of address space (RLIMIT_AS), where
    mapping the whole corpus at once fails: the reader maps only the shards it reads, at most
    train_data.MAX_MAPPED_BYTES at a time. The corpus repeats the examples of a built set (the builder
    streams its input, but tokenizing GiBs of text takes hours on this CPU)."""
    limit, shard_bytes, corpus_bytes = 3 << 30, 128 << 20, 5 << 29
    base = json.load(open(os.path.join(data_dir, "index.json")))
    tokens = np.concatenate([np.fromfile(os.path.join(data_dir, s["name"] + ".bin"), np.uint16)
                             for s in base["shards"]])
    idx, offset = [], 0
    for s in base["shards"]:
        rows = np.fromfile(os.path.join(data_dir, s["name"] + ".idx"), np.int64).reshape(-1, 3).copy()
        rows[:, 0] += offset
        offset += s["tokens"]
        idx.append(rows)
    idx = np.concatenate(idx)
    reps = shard_bytes // tokens.nbytes
    shard_tokens = np.tile(tokens, reps)
    shard_idx = np.concatenate([idx + np.array([r * len(tokens), 0, 0]) for r in range(reps)])
    big = tmp_path / "big"
    big.mkdir()
    shards = []
    for i in range(-(-corpus_bytes // shard_tokens.nbytes)):
        name = f"shard-{i:05d}"
        shard_tokens.tofile(str(big / (name + ".bin")))
        shard_idx.tofile(str(big / (name + ".idx")))
        shards.append({"name": name, "examples": len(shard_idx), "tokens": len(shard_tokens)})
    json.dump({**base, "shards": shards}, open(big / "index.json", "w"))
    size = sum(os.path.getsize(big / f) for f in os.listdir(big))
    assert size > limit + (256 << 20)

    # under the limit, mapping every shard at once fails
    code = ("import numpy as np, os, sys; d = sys.argv[1]; "
            "maps = [np.memmap(os.path.join(d, f), mode='r') for f in sorted(os.listdir(d)) if f.endswith(('.bin', '.idx'))]")
    r = subprocess.run([PY, "-c", code, str(big)], preexec_fn=_limited_address_space(limit), capture_output=True,
                       text=True)
    assert r.returncode != 0 and ("Cannot allocate memory" in r.stderr or "MemoryError" in r.stderr), r.stderr[-500:]
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    out = str(tmp_path / "out")
    r = subprocess.run([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")] +
                       _args(str(big), out, disc, gen, 3, 8, save=3), env=_env(), capture_output=True, text=True,
                       preexec_fn=_limited_address_space(limit), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(_losses(out)) == [1, 2, 3]
