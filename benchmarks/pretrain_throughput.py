"""Pretraining throughput on this machine: ELECTRA-small (discriminator 12 x 256, generator 12 x 64),
global batch 32 x 128, tokens/s of full training steps (forward, backward, AdamW, clipping).

- ours, one process using every core (pretrain/run_pretraining.py, the real trainer);
- ours, one process per core (`paddle.distributed.launch`, data parallel, one thread each);
- both again with `--amp bf16` where the CPU has native bf16 (avx512_bf16 / amx_bf16: every Linear's
  GEMMs in bf16 with fp32 weights and accumulation, paddle_electra/bf16_linear.py); its roofline share
  is still over the fp32 GEMM rate;
- a plain PyTorch loop doing the same RTD step with HF transformers' ELECTRA classes (run_torch), and where
  ours ran `--amp bf16`, the same loop under `torch.autocast("cpu", dtype=torch.bfloat16)`;
- PaddleNLP 2.8 ElectraForTotalPretraining + ElectraPretrainingCriterion on the same discriminator
  config (its generator is built from the same config, and it computes logits over the whole
  vocabulary at every position: that is its design), AdamW + clipping, one process, every core;
and the share of the fp32 roofline: model GEMM FLOPs per step (3 x forward) x steps/s over the
fp32 GEMM rate measured here (2048^3 matmul, all cores).

    python benchmarks/pretrain_throughput.py [--steps 10] [--skip-steps 10] [--skip-paddlenlp] [--skip-torch]
        [--skip-bf16] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from roofline import encoder_flops, gemm_peak  # noqa: E402  (benchmarks/ is the script's folder)


def model_flops(disc, gen, B, L, n_slots, generator_everywhere=False):
    """GEMM FLOPs of one training step (forward x 3) of the RTD model."""
    T = B * L
    fwd = encoder_flops(disc, B, L) + 2 * T * disc.hidden_size * (disc.hidden_size + 1)
    rows = T if generator_everywhere else B * n_slots
    fwd += encoder_flops(gen, B, L) + 2 * rows * (gen.hidden_size * gen.embedding_size + gen.embedding_size * gen.vocab_size)
    return 3 * fwd


def build_data(tmp, L):
    src = os.path.join(ROOT, "demo_data", "corpus_sample.txt")
    out = os.path.join(tmp, "data")
    subprocess.run([sys.executable, os.path.join(ROOT, "pretrain", "build_pretraining_dataset.py"), "--input", src,
                    "--output-dir", out, "--max-seq-length", str(L), "--num-processes", "2"],
                   check=True, capture_output=True)
    return out


def run_ours(tmp, data, nproc, B, steps, skip, amp="off"):
    """tokens/s of the `steps` steps after `skip` untimed ones, from the trainer's metrics.jsonl."""
    out = os.path.join(tmp, f"ours{nproc}-{amp}")
    args = ["--data-dir", data, "--model", "chinese-electra-small", "--output-dir", out,
            "--max-steps", str(skip + steps), "--train-batch-size", str(B // nproc), "--logging-steps", "1",
            "--save-steps", "1000000", "--warmup-steps", "10", "--no-progress", "--amp", amp]
    script = os.path.join(ROOT, "pretrain", "run_pretraining.py")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if nproc == 1:
        cmd = [sys.executable, script] + args
    else:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
               "--log_dir", os.path.join(tmp, f"log{nproc}-{amp}"), script] + args
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if l.strip()]
    times = [B * 128 / r["tokens_per_second"] for r in recs if "tokens_per_second" in r][skip:]
    return B * 128 * len(times) / sum(times)


def synthetic_batch(rng, B, L, step):
    """Random token ids [B, L] ([CLS] ... [SEP], no padding), their mask, and the original's masking of them
    (masking.mask_batch): what the peers train on."""
    import numpy as np
    from paddle_electra.pretraining.masking import mask_batch
    ids = rng.integers(1000, 20000, (B, L))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones((B, L), np.int64)
    return ids, mask, mask_batch(ids, mask, np.arange(B) + step * B, {"pad": 0, "cls": 101, "sep": 102, "mask": 103}, 0)


def run_paddlenlp(B, L, steps):
    import numpy as np
    import paddle
    from paddlenlp.transformers import ElectraConfig as PConfig
    from paddlenlp.transformers import ElectraForTotalPretraining, ElectraPretrainingCriterion
    from paddle_electra.config import get_variant
    from paddle_electra.runtime import configure_process
    configure_process("cpu")
    d = get_variant("chinese-electra-small").discriminator
    cfg = PConfig(vocab_size=d.vocab_size, embedding_size=d.embedding_size, hidden_size=d.hidden_size,
                  num_hidden_layers=d.num_hidden_layers, num_attention_heads=d.num_attention_heads,
                  intermediate_size=d.intermediate_size, hidden_act="gelu", hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                  initializer_range=0.02, pad_token_id=0)
    paddle.seed(0)
    model = ElectraForTotalPretraining(cfg)
    crit = ElectraPretrainingCriterion(cfg)
    decay = [p.name for n, p in model.named_parameters() if not any(k in n for k in ("bias", "norm", "LayerNorm"))]
    opt = paddle.optimizer.AdamW(5e-4, parameters=model.parameters(), weight_decay=0.01, epsilon=1e-6,
                                 apply_decay_param_fun=lambda n: n in decay,
                                 grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps + 1):
        ids, mask, m = synthetic_batch(rng, B, L, step)
        labels = np.full((B, L), -100, np.int64)
        for b in range(B):
            w = m["masked_lm_weights"][b] > 0
            labels[b, m["masked_lm_positions"][b][w]] = m["masked_lm_ids"][b][w]
        t0 = time.perf_counter()
        gl, dl, dlab, am = model(input_ids=paddle.to_tensor(m["masked_input_ids"]),
                                 token_type_ids=paddle.zeros([B, L], "int64"),
                                 raw_input_ids=paddle.to_tensor(ids), generator_labels=paddle.to_tensor(labels))
        loss = crit(gl, dl, paddle.to_tensor(labels), dlab, am)
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)
        if step:
            times.append(time.perf_counter() - t0)
        print(f"  paddlenlp step {step}: {time.perf_counter() - t0:.1f} s", flush=True)
    return B * L * len(times) / sum(times)


def run_torch(B, L, steps, threads, bf16=False):
    """A plain PyTorch loop doing the same RTD step: HF ElectraForMaskedLM generator and
    ElectraForPreTraining discriminator sharing the whole embeddings block, generator logits at the
    masked positions only, gumbel-max sampling, 1 * MLM + 50 * disc, AdamW, global-norm clip 1.0.
    bf16: the forward under torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's CPU mixed precision:
    fp32 weights, bf16 GEMMs), backward and optimizer outside it, as PyTorch documents."""
    import numpy as np
    import torch
    import transformers
    from peers import autocast, hf_config
    from paddle_electra.config import get_variant
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    v = get_variant("chinese-electra-small")
    disc = transformers.ElectraForPreTraining(hf_config(v.discriminator))
    gen = transformers.ElectraForMaskedLM(hf_config(v.generator))
    gen.electra.embeddings = disc.electra.embeddings
    gen.tie_weights()  # the LM head's weight is the (shared) word embeddings
    params = list({id(p): p for p in list(disc.parameters()) + list(gen.parameters())}.values())
    names = {id(p): n for m in (disc, gen) for n, p in m.named_parameters()}
    decay = [p for p in params if not ("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias"))]
    rest = [p for p in params if "LayerNorm" in names[id(p)] or names[id(p)].endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                            lr=5e-4, eps=1e-6)
    disc.train()
    gen.train()
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps + 1):
        ids, mask, m = synthetic_batch(rng, B, L, step)
        t0 = time.perf_counter()
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        masked = torch.from_numpy(m["masked_input_ids"])
        pos = torch.from_numpy(m["masked_lm_positions"])
        w = torch.from_numpy(m["masked_lm_weights"])
        with autocast(bf16):
            h = gen.electra(input_ids=masked, attention_mask=mask_t)[0]
            h = h.gather(1, pos.unsqueeze(-1).expand(-1, -1, h.size(-1)))
            logits = gen.generator_lm_head(gen.generator_predictions(h))
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.from_numpy(m["masked_lm_ids"]).flatten(),
                                                   reduction="none")
            mlm = (ce * w.flatten()).sum() / (w.sum() + 1e-6)
            with torch.no_grad():
                u = torch.rand_like(logits).clamp_(1e-9, 1 - 1e-9)
                sampled = (logits - torch.log(-torch.log(u))).argmax(-1)
                fake = masked.clone()
                fake.scatter_(1, pos, torch.where(w > 0, sampled, fake.gather(1, pos)))
                labels = (fake != ids_t).float()
            d_logits = disc(input_ids=fake, attention_mask=mask_t).logits
            d_loss = (torch.nn.functional.binary_cross_entropy_with_logits(d_logits, labels, reduction="none")
                      * mask_t).sum() / mask_t.sum()
            loss = mlm + 50.0 * d_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        loss.item()
        if step:
            times.append(time.perf_counter() - t0)
        print(f"  pytorch{' bf16 autocast' if bf16 else ''} step {step}: {time.perf_counter() - t0:.1f} s", flush=True)
    return B * L * len(times) / sum(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed steps of ours per configuration")
    p.add_argument("--skip-steps", type=int, default=10,
                   help="untimed steps of ours first: start-up, and the optimizer state of real training")
    p.add_argument("--paddlenlp-steps", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--skip-paddlenlp", action="store_true")
    p.add_argument("--torch-steps", type=int, default=5, help="timed steps of the PyTorch loop")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--skip-bf16", action="store_true", help="no `--amp bf16` runs of ours")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    from paddle_electra.config import get_variant
    from paddle_electra.pretraining.masking import max_predictions
    from paddle_electra.runtime import available_cores

    B, L = args.batch_size, 128
    v = get_variant("chinese-electra-small")
    load = os.getloadavg()
    print(f"cores {available_cores()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    peak = gemm_peak()
    print(f"fp32 GEMM peak (2048^3, all cores): {peak / 1e9:.0f} GFLOP/s", flush=True)
    flops = model_flops(v.discriminator, v.generator, B, L, max_predictions(0.15, L))
    from paddle_electra.cpu import cpu_info, machine_record, mkl_status
    info = cpu_info()
    print(f"{info.describe()}; {mkl_status()}")
    res = {"batch": B, "seq_len": L, "gemm_peak_gflops": peak / 1e9, "flops_per_step": flops,
           **machine_record()}
    with tempfile.TemporaryDirectory() as tmp:
        data = build_data(tmp, L)
        cores = available_cores()
        for nproc in sorted({1, cores} if cores > 1 else {1}):
            tps = run_ours(tmp, data, nproc, B, args.steps, args.skip_steps)
            share = flops * tps / (B * L) / peak
            res[f"ours_{nproc}proc_tokens_per_s"] = tps
            res[f"ours_{nproc}proc_roofline_share"] = share
            print(f"ours, {nproc} process(es): {tps:.0f} tokens/s, {100 * share:.1f}% of the fp32 roofline", flush=True)
        from paddle_electra import bf16_linear
        why = "--skip-bf16" if args.skip_bf16 else bf16_linear.unavailable(info)
        res["ours_bf16"] = why or "ran"
        if why:
            print(f"ours --amp bf16: not run ({why})", flush=True)
        else:
            for nproc in sorted({1, cores} if cores > 1 else {1}):
                tps = run_ours(tmp, data, nproc, B, args.steps, args.skip_steps, amp="bf16")
                share = flops * tps / (B * L) / peak
                res[f"ours_bf16_{nproc}proc_tokens_per_s"] = tps
                res[f"ours_bf16_{nproc}proc_fp32_roofline_share"] = share
                print(f"ours --amp bf16, {nproc} process(es): {tps:.0f} tokens/s, {100 * share:.1f}% of the fp32 "
                      f"roofline; {tps / res[f'ours_{nproc}proc_tokens_per_s']:.2f}x ours fp32", flush=True)
    best = max(v_ for k, v_ in res.items() if k.startswith("ours_") and "bf16" not in k and k.endswith("tokens_per_s"))
    res["ours_best_tokens_per_s"] = best
    bf16_runs = [v_ for k, v_ in res.items() if k.startswith("ours_bf16_") and k.endswith("tokens_per_s")]
    if bf16_runs:
        res["ours_bf16_best_tokens_per_s"] = max(bf16_runs)
    if not args.skip_paddlenlp:
        tps = run_paddlenlp(B, L, args.paddlenlp_steps)
        pflops = model_flops(v.discriminator, v.discriminator, B, L, L, generator_everywhere=True)
        res.update(paddlenlp_tokens_per_s=tps, paddlenlp_roofline_share=pflops * tps / (B * L) / peak,
                   ratio_best_ours_vs_paddlenlp=best / tps)
        print(f"PaddleNLP ElectraForTotalPretraining: {tps:.0f} tokens/s "
              f"({100 * res['paddlenlp_roofline_share']:.1f}% of the roofline for its larger model)")
        print(f"ratio (our best / PaddleNLP): {best / tps:.1f}x")
    if not args.skip_torch:
        tps = run_torch(B, L, args.torch_steps, available_cores())
        res.update(pytorch_tokens_per_s=tps, ratio_best_ours_vs_pytorch=best / tps)
        print(f"PyTorch loop (HF ELECTRA classes, {available_cores()} threads): {tps:.0f} tokens/s; "
              f"ratio (our best / PyTorch): {best / tps:.2f}x")
        if bf16_runs:
            res["ratio_best_ours_bf16_vs_pytorch_fp32"] = max(bf16_runs) / tps
            print(f"ratio (our best --amp bf16 / PyTorch fp32): {max(bf16_runs) / tps:.2f}x")
            cast = run_torch(B, L, args.torch_steps, available_cores(), bf16=True)
            res.update(pytorch_bf16_autocast_tokens_per_s=cast,
                       ratio_best_ours_bf16_vs_pytorch_bf16_autocast=max(bf16_runs) / cast)
            print(f"PyTorch loop under bf16 autocast: {cast:.0f} tokens/s; ratio (our best --amp bf16 / PyTorch "
                  f"bf16 autocast): {max(bf16_runs) / cast:.2f}x")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
