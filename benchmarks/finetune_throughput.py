"""Fine-tuning throughput: training examples/s of ELECTRA-small sequence classification (batch 32,
length 128 by default) with this library (ElectraForSequenceClassification + the original's
AdamW with layerwise LR decay, global-norm clip 1.0, and on CPU the training kernels of
paddle_electra.fast_cpu, as run_finetuning.py trains) against PaddleNLP 2.8's
ElectraForSequenceClassification (paddle.optimizer.AdamW, the same clip and weight decay) and HF
transformers' ElectraForSequenceClassification in PyTorch eager (torch AdamW, same clip), same
shapes, same random weights for the backbone, same batches, in one process.

Where the CPU has native bf16, also ours with `amp: "bf16"` (the model's GEMMs in bf16) and HF's model under
torch.autocast("cpu", dtype=torch.bfloat16), in the same rounds.

Then the real trainer (`paddle-electra finetune`, ChnSentiCorp format, texts of L tokens, the same
weights, global batch and length) in 1 process and in one process per core (`--nproc-per-node N`,
data parallel, one thread each), fp32 and (native bf16 only) `amp: "bf16"`: examples/s from its training
log, after --trainer-skip warm-up steps; ours' best bf16 figure, in-process or trainer, is the one
compared with the peers. And the fp32 roofline: the classifier's GEMM FLOPs per training step
(3 x forward) over the 2048^3 GEMM rate measured in this run, i.e. the shortest step any
implementation could take on this CPU and the largest ratio to HF PyTorch it allows.

    python benchmarks/finetune_throughput.py                  # 12 layers, 32 x 128, 3 rounds of 5 steps
    python benchmarks/finetune_throughput.py --steps 10 --rounds 5 --output results.jsonl

The in-process engines take turns each round (a busy machine slows all alike); the median over
rounds is reported, with the ratios ours / PaddleNLP and ours' best configuration / HF PyTorch. A
step is forward + loss + backward + optimizer step.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from roofline import encoder_flops, gemm_peak  # noqa: E402  (benchmarks/ is the script's folder)


def ours(cfg, lr, bf16=False):
    """Our classifier and training step as finetuning.trainer runs them; bf16: the Linear GEMMs in bf16 (the
    hparam amp: "bf16", native-bf16 CPUs)."""
    import paddle
    from paddle_electra.heads import ElectraForSequenceClassification
    from paddle_electra.optimization import create_optimizer
    model = ElectraForSequenceClassification(cfg, num_labels=2)
    from paddle_electra.modeling import set_execution_modes
    set_execution_modes(model, fast_cpu_kernels=paddle.get_device() == "cpu",  # as finetuning.trainer does
                        bf16_gemm=bf16)
    opt, sched = create_optimizer(model, lr, 1000, 100, layerwise_lr_decay=0.8)

    def step(ids, types, mask, labels):
        loss = model.loss(model(ids, types, mask), labels)
        loss.backward()
        opt.step()
        opt.clear_grad()
        sched.step()
        return float(loss)
    model.train()
    return model, step


def paddlenlp(cfg, lr, state):
    import paddle
    from paddlenlp.transformers import ElectraConfig as NLPConfig
    from paddlenlp.transformers import ElectraForSequenceClassification as NLPModel
    nlp_cfg = NLPConfig(vocab_size=cfg.vocab_size, embedding_size=cfg.embedding_size, hidden_size=cfg.hidden_size,
                        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                        intermediate_size=cfg.intermediate_size, hidden_act="gelu",
                        max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
                        num_labels=2)
    model = NLPModel(nlp_cfg)
    # the same backbone weights, renamed by the PaddleNLP exporter's name table
    from paddle_electra.conversion.paddlenlp_export import to_paddlenlp_name
    theirs, loaded = model.state_dict(), 0
    for k, v in state.items():
        if k.startswith("electra."):
            theirs[to_paddlenlp_name(k)].set_value(v)
            loaded += 1
    sched = paddle.optimizer.lr.LinearWarmup(paddle.optimizer.lr.PolynomialDecay(lr, 1000, 0.0), 100, 0.0, lr)
    no_decay = {p.name for n, p in model.named_parameters() if "norm" in n.lower() or "bias" in n}
    opt = paddle.optimizer.AdamW(learning_rate=sched, parameters=model.parameters(), weight_decay=0.01,
                                 epsilon=1e-6, grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0),
                                 apply_decay_param_fun=lambda n: n not in no_decay)
    ce = paddle.nn.CrossEntropyLoss()

    def step(ids, types, mask, labels):
        logits = model(ids, token_type_ids=types, attention_mask=mask)
        loss = ce(logits, labels)
        loss.backward()
        opt.step()
        opt.clear_grad()
        sched.step()
        return float(loss)
    model.train()
    return model, step, loaded


def hf_torch(cfg, lr, state, threads, bf16=False):
    """HF transformers' ElectraForSequenceClassification in PyTorch eager with the same backbone weights:
    torch.optim.AdamW (same weight decay exclusions), the same clip and schedule; bf16: the forward under
    torch.autocast("cpu", dtype=torch.bfloat16)."""
    import torch
    import transformers
    from peers import autocast, hf_config, load_into
    torch.set_num_threads(threads)
    model = transformers.ElectraForSequenceClassification(hf_config(cfg, num_labels=2))
    load_into(model, state)
    decay = [p for n, p in model.named_parameters() if not ("LayerNorm" in n or n.endswith("bias"))]
    rest = [p for n, p in model.named_parameters() if "LayerNorm" in n or n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, eps=1e-6)
    sched = transformers.get_linear_schedule_with_warmup(opt, 100, 1000)
    ce = torch.nn.CrossEntropyLoss()

    def step(ids, types, mask, labels):
        t = lambda x: torch.from_numpy(x.numpy())  # noqa: E731  (the same batches as ours)
        with autocast(bf16):
            loss = ce(model(input_ids=t(ids), token_type_ids=t(types), attention_mask=t(mask)).logits, t(labels))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()
        return loss.item()
    model.train()
    return model, step


def classifier_flops(cfg, B, L, num_labels=2):
    """GEMM FLOPs of one training step (forward x 3) of ours' sequence classifier."""
    return 3 * (encoder_flops(cfg, B, L) + 2 * B * cfg.hidden_size * num_labels)


def run_trainer(tmp, model, cfg, nproc, B, L, steps, skip, amp="off"):
    """examples/s of `paddle-electra finetune --nproc-per-node nproc` (hparams `amp`) over the `steps` steps
    after `skip` untimed ones (its training log: examples/s of each step), on B * (skip + steps) examples of
    L tokens (random characters of the vocabulary), starting from `model`'s weights."""
    from paddle_electra.tokenizer import ElectraTokenizer
    model_dir = os.path.join(tmp, "model")
    if not os.path.isdir(model_dir):
        model.save_pretrained(model_dir)
        vocab = [t for t in ElectraTokenizer().vocab if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
        rng = np.random.RandomState(0)
        rows = ["label\ttext_a"] + [f"{rng.randint(2)}\t" + "".join(rng.choice(vocab, L - 2))
                                    for _ in range(B * (skip + steps))]
        os.makedirs(os.path.join(tmp, "finetuning_data", "chnsenticorp"))
        with open(os.path.join(tmp, "finetuning_data", "chnsenticorp", "train.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
    results = os.path.join(tmp, f"results{nproc}-{amp}")
    hparams = {"task_names": ["chnsenticorp"], "train_batch_size": B, "max_seq_length": L, "num_train_epochs": 1,
               "log_every": 1, "do_eval": False, "save_model": False, "learning_rate": 3e-4,
               "results_dir": results, "amp": amp}
    cmd = [sys.executable, "-m", "paddle_electra.cli", "finetune", "--data-dir", tmp, "--model-name", model_dir,
           "--hparams", json.dumps(hparams), "--nproc-per-node", str(nproc)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    with open(os.path.join(results, "chnsenticorp_train_trial1.jsonl"), encoding="utf-8") as f:
        recs = [json.loads(l) for l in f if l.strip()]
    if len(recs) != skip + steps:
        raise RuntimeError(f"{results}: {len(recs)} training records, expected {skip + steps}")
    times = [B / rec["examples_per_second"] for rec in recs[skip:]]
    return B * len(times) / sum(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="chinese-electra-small")
    p.add_argument("--num-hidden-layers", type=int, default=None, help="override the depth")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the first round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-paddlenlp", action="store_true")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--skip-bf16", action="store_true", help="no bf16 arms (ours amp bf16, PyTorch bf16 autocast)")
    p.add_argument("--trainer-skip", type=int, default=3, help="untimed first steps of the real trainer")
    p.add_argument("--skip-trainer", action="store_true", help="no rows of the real trainer")
    p.add_argument("--output", help="append a JSON line with the results")
    args = p.parse_args(argv)

    import paddle
    from paddle_electra.config import get_variant
    from paddle_electra.runtime import available_cores, configure_process
    load = os.getloadavg()
    print(f"cores {available_cores()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    peak = gemm_peak()
    print(f"fp32 GEMM peak (2048^3, all cores): {peak / 1e9:.0f} GFLOP/s", flush=True)
    device = configure_process()
    cfg = get_variant(args.model).discriminator
    if args.num_hidden_layers:
        cfg = cfg.replace(num_hidden_layers=args.num_hidden_layers)
    paddle.seed(0)
    engines = {}
    model, step = ours(cfg, 3e-4)
    engines["paddle_electra"] = step
    if not args.skip_paddlenlp:
        _, nstep, loaded = paddlenlp(cfg, 3e-4, {k: v.numpy() for k, v in model.state_dict().items()})
        engines["paddlenlp"] = nstep
        print(f"paddlenlp: copied {loaded} backbone tensors from ours")
    from paddle_electra import bf16_linear
    from paddle_electra.cpu import cpu_info
    no_bf16 = "--skip-bf16" if args.skip_bf16 else bf16_linear.unavailable(cpu_info())
    if no_bf16:
        print(f"bf16 arms (ours amp bf16, PyTorch bf16 autocast): not run ({no_bf16})", flush=True)
    else:
        bf16_model, engines["paddle_electra_bf16"] = ours(cfg, 3e-4, bf16=True)
        bf16_model.set_state_dict(model.state_dict())
    if not args.skip_torch:
        from paddle_electra.runtime import default_num_threads
        state = {k: v.numpy() for k, v in model.state_dict().items()}
        engines["hf_pytorch"] = hf_torch(cfg, 3e-4, state, default_num_threads())[1]
        if not no_bf16:
            engines["hf_pytorch_bf16_autocast"] = hf_torch(cfg, 3e-4, state, default_num_threads(), bf16=True)[1]

    rng = np.random.RandomState(0)
    B, S = args.batch_size, args.seq_len

    def batch():
        ids = rng.randint(1000, cfg.vocab_size, size=(B, S)).astype("int64")
        ids[:, 0] = 101
        return (paddle.to_tensor(ids), paddle.zeros([B, S], "int64"), paddle.ones([B, S], "int64"),
                paddle.to_tensor(rng.randint(0, 2, size=B).astype("int64")))
    batches = [batch() for _ in range(args.steps)]
    for name, step in engines.items():
        for i in range(args.warmup):
            step(*batches[i % len(batches)])
    times = {name: [] for name in engines}
    for r in range(args.rounds):
        for name, step in engines.items():
            t0 = time.perf_counter()
            for b in batches:
                step(*b)
            times[name].append(args.steps * B / (time.perf_counter() - t0))
        print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f} ex/s" for n in engines), flush=True)
    trainer = {}
    if not args.skip_trainer:
        cores = available_cores()
        with tempfile.TemporaryDirectory(prefix="finetune-bench-") as tmp:
            for amp in ("off",) if no_bf16 else ("off", "bf16"):
                for nproc in sorted({1, cores} if cores > 1 and B % cores == 0 else {1}):
                    trainer[nproc, amp] = run_trainer(tmp, model, cfg, nproc, B, S, args.steps * args.rounds,
                                                      args.trainer_skip, amp)
                    print(f"ours, {nproc} process(es) (paddle-electra finetune --nproc-per-node {nproc}, amp {amp}): "
                          f"{trainer[nproc, amp]:.1f} examples/s", flush=True)
    from paddle_electra.cpu import machine_record
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
              **machine_record(),
              "device": device, "model": args.model, "num_hidden_layers": cfg.num_hidden_layers,
              "batch_size": B, "seq_len": S, "steps": args.steps, "rounds": args.rounds,
              "examples_per_second": {n: statistics.median(v) for n, v in times.items()},
              "per_round": times, "gemm_peak_gflops": peak / 1e9, "flops_per_step": classifier_flops(cfg, B, S)}
    for (nproc, amp), v in trainer.items():
        result["examples_per_second"][f"paddle_electra_trainer_{nproc}proc" + ("_bf16" if amp == "bf16" else "")] = v
    ours_best = max(v for n, v in result["examples_per_second"].items()
                    if n.startswith("paddle_electra") and "bf16" not in n)
    result["ours_best_examples_per_second"] = ours_best
    line = ", ".join(f"{n}: {statistics.median(v):.1f} examples/s" for n, v in times.items())
    if "paddlenlp" in times:
        result["ratio_ours_over_paddlenlp"] = result["examples_per_second"]["paddle_electra"] / \
            result["examples_per_second"]["paddlenlp"]
        line += f" - ratio to PaddleNLP {result['ratio_ours_over_paddlenlp']:.2f}"
    if "hf_pytorch" in times:
        result["ratio_ours_over_hf_pytorch"] = result["examples_per_second"]["paddle_electra"] / \
            result["examples_per_second"]["hf_pytorch"]
        result["ratio_ours_best_over_hf_pytorch"] = ours_best / result["examples_per_second"]["hf_pytorch"]
        line += f", to HF PyTorch {result['ratio_ours_over_hf_pytorch']:.2f}"
    print(f"training throughput (in-process: median of {args.rounds} rounds, batch {B} x {S}): {line}")
    best_step = result["flops_per_step"] / peak  # seconds: every GEMM at the measured rate, nothing else
    result["roofline_examples_per_second"] = B / best_step
    print(f"fp32 roofline: {result['flops_per_step'] / 1e9:.0f} GFLOP per step / {peak / 1e9:.0f} GFLOP/s = "
          f"{best_step:.2f} s per step at least = {B / best_step:.1f} examples/s at most; ours' best "
          f"{ours_best:.1f} examples/s = {100 * ours_best * best_step / B:.0f}% of it")
    if "hf_pytorch" in times:
        hf = result["examples_per_second"]["hf_pytorch"]
        result["roofline_ratio_over_hf_pytorch"] = B / best_step / hf
        print(f"ratio ours' best / HF PyTorch: {result['ratio_ours_best_over_hf_pytorch']:.2f}x "
              f"(the roofline allows at most {result['roofline_ratio_over_hf_pytorch']:.2f}x)")
    if "paddle_electra_bf16" in times:
        eps = result["examples_per_second"]
        best_bf16 = max(v for n, v in eps.items() if n.startswith("paddle_electra") and n.endswith("bf16"))
        result["ours_best_bf16_examples_per_second"] = best_bf16
        peers = ("hf_pytorch", "hf_pytorch_bf16_autocast", "paddle_electra")
        bf16_ratios = {peer: best_bf16 / eps[peer] for peer in peers if peer in eps}
        result["ratio_ours_bf16_over"] = bf16_ratios
        print(f"ours' best amp bf16 ({best_bf16:.1f} examples/s; in-process {eps['paddle_electra_bf16']:.1f}): "
              + ", ".join(f"{r:.2f}x {peer}" for peer, r in bf16_ratios.items()))
    load = os.getloadavg()
    result["load_average_end"] = load[0]
    print(f"load average at the end {load[0]:.2f}")
    if args.output:
        with open(args.output, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
