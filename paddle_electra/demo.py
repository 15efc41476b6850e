"""The main job end to end, offline, on the bundled sample (`make demo`):

  1. build a pretraining set from demo_data/corpus_sample.txt and the unlabeled texts of the
     sentiment sample's train split (task-adaptive pretraining; no dev text)
  2. pretrain a small ELECTRA with the RTD trainer, two processes through paddle.distributed.launch
  3. export the discriminator
  4. fine-tune it on the bundled ChnSentiCorp sample and evaluate; beside it (one core each), the
     same fine-tuning from random initialisation of the same shape, to show what pretraining added
  5. install the PaddleHub module, answer a few sentences through hub.Module(name=...)
  6. start `hub serving` on 127.0.0.1 and answer the same sentences over HTTP
  7. print a short report

Every step runs the `paddle-electra` subcommand a user would run (as `python -m paddle_electra.cli`,
shown before it runs), so the demo works from an installed package as from a checkout: the sample
and the hub module come from the checkout or from the package's data files (setup.py installs them
under <prefix>/share/paddle-electra). `--data-dir` reads the full data sets instead
(<data-dir>/corpus/*.txt and <data-dir>/chnsenticorp/).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # a checkout, when this is one
SHARE = os.path.join(sys.prefix, "share", "paddle-electra")  # setup.py's data_files
PY = sys.executable
CLI = [PY, "-m", "paddle_electra.cli"]
# (text, expected label): ChnSentiCorp's 0 = negative, 1 = positive. The first is a dev text (not in
# the train sample), the others are written for the demo; none is in the official train split.
SENTENCES = [("这个宾馆比较陈旧了，特价的房间也很一般。总体来说一般", "0"),
             ("房间很干净，服务员态度也很好，下次还会再来。", "1"),
             ("电池不耐用，屏幕也有坏点，非常失望。", "0"),
             ("这本书写得很精彩，内容丰富，值得一读。", "1"),
             ("酒店位置偏僻，早餐难吃，服务态度很差，不会再住了。", "0"),
             ("笔记本运行速度很快，外观也漂亮，性价比很高。", "1")]
TEXTS = [t for t, _ in SENTENCES]
LABEL_NAMES = {"0": "negative", "1": "positive"}

# The demo's recipe, chosen by the short runs of docs/pretraining.md, section 8. The shape:
# ELECTRA-small's embeddings (E 128, the 21,128-token vocab) under 4 layers of H 128 (2 heads, FFN
# 512), generator H 32 (1/4 of it, as small's): 4x faster per example than 6 x H 256, which leaves
# the fine-tuning 2 epochs of the 4,800-example sample in the budget. Pretraining: peak LR 1e-4
# (from 2e-4 up, 3 minutes of batch 32 end with a discriminator that predicts "original" everywhere
# and an encoder that fine-tunes worse than random weights).
SHAPE = {"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512}
GENERATOR_SHAPE = {"num_hidden_layers": 4, "hidden_size": 32, "num_attention_heads": 1, "intermediate_size": 128}
PRETRAIN = {"--train-batch-size": "16", "--learning-rate": "1e-4", "--warmup-steps": "20"}
FINETUNE = {"max_seq_length": 128, "learning_rate": 3e-4, "train_batch_size": 32}
# --quick: the budget of an install check
QUICK = {"pretrain_minutes": 0.5, "pretrain_steps": 40, "finetune_epochs": 0.5}


def _log(msg):
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class DemoError(RuntimeError):
    """A step of the demo failed (names the step; its own output was printed above)."""


def _run(cmd, env=None, step=""):
    _log("$ " + " ".join(cmd))
    if subprocess.run(cmd, env=env).returncode != 0:  # its stderr went to the terminal
        raise DemoError(f"step {step} failed: {' '.join(cmd[:4])} ... exited non-zero (its output is above)")


def _capture(cmd, env, step):
    """Run `cmd` for its stdout; on failure, print its stderr and stop the demo naming the step."""
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DemoError(f"step {step} failed: {last}")
    return out.stdout


def resource(rel: str) -> str:
    """A file of the repository (demo_data/..., hub_modules/...): from the checkout, else from the
    installed package's data files."""
    for base in (ROOT, SHARE):
        path = os.path.join(base, rel)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{rel} is neither in a checkout ({ROOT}) nor installed under {SHARE}; "
                            f"install paddle-electra with pip, or run from the repository")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _last_jsonl(path):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[-1] if rows else {}


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--data-dir", help="full data sets (corpus/, chnsenticorp/) instead of demo_data/")
    p.add_argument("--output-dir", default=os.path.join("runs", "demo"), help="replaced if it exists")
    p.add_argument("--pretrain-minutes", type=float, default=3.0, help="the pretraining budget (wall time)")
    p.add_argument("--pretrain-steps", type=int, default=400,
                   help="the learning-rate schedule's length (linear decay to 0); the minutes stop it earlier")
    p.add_argument("--nproc", type=int, default=2, help="pretraining processes")
    p.add_argument("--finetune-epochs", type=float, default=2)
    p.add_argument("--quick", action="store_true",
                   help=f"the same steps on a small budget ({QUICK['pretrain_minutes']} minutes of pretraining, "
                        f"{QUICK['finetune_epochs']} epoch of fine-tuning): checks an install end to end in ~3 minutes "
                        f"(CI runs it in the hub-only install); the labels are then close to chance")
    p.add_argument("--random-init", action="store_true",
                   help="also fine-tune from random initialisation beside it, one core each (the comparison; about "
                        "3 minutes more: measured with 3 seeds on the full tasks in docs/results.md)")


def run(args) -> int:
    try:
        return _steps(args)
    except DemoError as e:
        print(f"paddle-electra demo: error: {e}", file=sys.stderr)
        return 1


def _steps(args) -> int:
    t0 = time.time()
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    out = os.path.abspath(args.output_dir)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    if args.data_dir:
        corpus = sorted(glob.glob(os.path.join(args.data_dir, "corpus", "*.txt")))
        cls_dir = os.path.join(args.data_dir, "chnsenticorp")
    else:
        corpus = [resource(os.path.join("demo_data", "corpus_sample.txt"))]
        cls_dir = resource(os.path.join("demo_data", "chnsenticorp"))
    env = dict(os.environ, PADDLE_ELECTRA_HOME=os.path.join(out, "models"), HUB_HOME=os.path.join(out, "hub_home"),
               PYTHONUNBUFFERED="1")
    report = {}

    _log("1/6 building the pretraining set (text sample + the sentiment train split's texts, unlabeled)")
    data = os.path.join(out, "pretrain_data")
    _run(CLI + ["build-data", "--input", *corpus, "--task-texts", "chnsenticorp=" + os.path.join(cls_dir, "train.tsv"),
                "--exclude-texts-of", "chnsenticorp=" + os.path.join(cls_dir, "dev.tsv"), "--output-dir", data,
                "--max-seq-length", "128", "--num-processes", "2"], env, "1/6 (building the pretraining set)")

    _log(f"2/6 pretraining ({args.nproc} processes, at most {args.pretrain_minutes} minutes)")
    run_dir = os.path.join(out, "pretrain")
    configs = _demo_configs(os.path.join(out, "configs"))
    _run(CLI + ["pretrain", "--nproc-per-node", str(args.nproc), "--launch-log-dir", os.path.join(out, "launch_logs"),
                "--data-dir", data, "--output-dir", run_dir,
                "--discriminator-config", configs[0], "--generator-config", configs[1],
                *[x for kv in PRETRAIN.items() for x in kv],
                "--max-steps", str(args.pretrain_steps), "--max-minutes", str(args.pretrain_minutes),
                "--save-steps", "100", "--logging-steps", "10"], env, "2/6 (pretraining)")
    report["pretraining"] = _last_jsonl(os.path.join(run_dir, "metrics.jsonl"))

    _log("3/6 exporting the discriminator and generator")
    pretrained = os.path.join(out, "models", "chinese-electra-small")
    _run(CLI + ["export", "pretraining", run_dir, pretrained], env, "3/6 (export)")

    hp = {"task_names": ["chnsenticorp"], "num_train_epochs": args.finetune_epochs, **FINETUNE, "do_test": False,
          "train_file": os.path.join(cls_dir, "train.tsv"), "dev_file": os.path.join(cls_dir, "dev.tsv")}
    jobs = {"pretrained": (pretrained, {"results_dir": os.path.join(out, "results")})}
    if not args.random_init:
        _log("4/6 fine-tuning on ChnSentiCorp")
    else:
        _log("4/6 fine-tuning on ChnSentiCorp, from the pretrained model and, beside it (one core each), "
             "from random initialisation")
        random_init = os.path.join(out, "models", "random-init")
        _random_init(configs, random_init)
        jobs["random_init"] = (random_init, {"results_dir": os.path.join(out, "results_random_init"),
                                             "save_model": False})
    threads = {"num_threads": 1} if len(jobs) > 1 else {}
    procs = {}
    for name, (model, extra) in jobs.items():
        cmd = CLI + ["finetune", "--data-dir", out, "--model-name", model, "--hparams", json.dumps({**hp, **extra, **threads})]
        _log("$ " + " ".join(cmd))
        log = None if name == "pretrained" else open(os.path.join(out, f"finetune_{name}.log"), "w")
        procs[name] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=log and subprocess.STDOUT), log)
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        if log:
            log.close()
        if rc != 0:
            raise DemoError(f"step 4/6 failed: fine-tuning ({name}) exited with {rc}" +
                            (f"; see {log.name}" if log else " (its output is above)"))
    for name, (_, extra) in jobs.items():
        with open(os.path.join(extra["results_dir"], "chnsenticorp_results.json"), encoding="utf-8") as f:
            report[f"finetuning_{name}"] = json.load(f)
    finetuned = sorted(glob.glob(os.path.join(out, "finetuning_models", "chnsenticorp_model_*")))[-1]

    _log("5/6 PaddleHub: install the module, predict through hub.Module(name=...)")
    _run([os.path.join(os.path.dirname(PY), "hub"), "install", resource(os.path.join("hub_modules", "chinese_electra_small"))],
         env, "5/6 (hub install)")
    code = ("import json, paddlehub as hub\n"
            f"m = hub.Module(name='chinese-electra-small', task='seq-cls', load_checkpoint={finetuned!r})\n"
            f"print(json.dumps(m.predict([[s] for s in {TEXTS!r}], max_seq_len=128, batch_size=8, "
            "return_prob=True), ensure_ascii=False))\n")
    hub_out = _capture([PY, "-c", code], env, "5/6 (hub.Module predict)")
    labels, probs = json.loads(hub_out.strip().splitlines()[-1])  # return_prob: [labels, probabilities]
    report["hub_module"] = [{"text": s, "expected": exp, "label": str(lab), "probabilities": [round(p, 4) for p in pr]}
                            for (s, exp), lab, pr in zip(SENTENCES, labels, probs)]
    for r in report["hub_module"]:
        _log(f"  {r['text']} -> label {r['label']}, probabilities {r['probabilities']}")

    _log("6/6 hub serving on 127.0.0.1")
    port = _free_port()
    cfg = {"modules_info": {"chinese-electra-small": {
        "init_args": {"task": "seq-cls", "load_checkpoint": finetuned},
        "predict_args": {"max_seq_len": 128, "batch_size": 8}}}, "port": port}
    cfg_path = os.path.join(out, "serving_config.json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
    serve_log = open(os.path.join(out, "serving.log"), "w")
    cmd = CLI + ["serve", "-c", cfg_path]
    _log("$ " + " ".join(cmd))
    server = subprocess.Popen(cmd, env=env, stdout=serve_log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/predict/chinese-electra-small"
        body = json.dumps({"data": [[s] for s in TEXTS]}).encode()
        deadline = time.time() + 180
        while True:
            try:
                req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    report["serving"] = json.loads(r.read())
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    serve_log.flush()
                    with open(serve_log.name, encoding="utf-8", errors="replace") as f:
                        sys.stderr.write("".join(f.readlines()[-30:]))
                    raise DemoError(f"step 6/6 failed: hub serving did not answer (its log's end is above; "
                                    f"all of it in {serve_log.name})")
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
        serve_log.close()
    _log(f"  POST {url} -> {json.dumps(report['serving'], ensure_ascii=False)}")

    pre = report["pretraining"]
    acc = {k: report[f"finetuning_{k}"]["summary"]["dev_accuracy"]["max"] for k in jobs}
    trial = report["finetuning_pretrained"]["trials"][0]
    served = [str(x) for x in report["serving"].get("results", [])]
    rows = [(r["text"], r["expected"], r["label"], served[i] if i < len(served) else "-")
            for i, r in enumerate(report["hub_module"])]
    right = report["sentences_right"] = {"hub_module": sum(e == h for _, e, h, _ in rows),
                                         "serving": sum(e == v for _, e, _, v in rows), "of": len(rows)}
    lines = [
        "", "=" * 72, "paddle-electra demo report", "=" * 72,
        f"pretraining   {pre.get('step')} steps of {args.nproc} x {PRETRAIN['--train-batch-size']} sequences in "
        f"{pre.get('elapsed_minutes', float('nan')):.1f} minutes ({pre.get('tokens_per_second', 0):.0f} tokens/s); "
        f"last batches: MLM acc {pre.get('mlm_accuracy', float('nan')):.3f}, disc AUC {pre.get('disc_auc', float('nan')):.3f}",
        f"fine-tuning   ChnSentiCorp, {trial['train_features']} train examples, {args.finetune_epochs:g} epochs "
        f"({trial['train_seconds'] / 60:.1f} minutes): dev accuracy {acc['pretrained']:.2f}%"]
    if "random_init" in acc:
        gain = acc["pretrained"] - acc["random_init"]
        verdict = ("no measurable gain from pretraining at this budget" if abs(gain) < 2 else
                   "pretraining helped" if gain > 0 else "pretraining hurt")
        lines.append(f"random init   the same fine-tuning from random weights of the same shape: {acc['random_init']:.2f}% "
                     f"({gain:+.2f} points: {verdict}; one seed, differences under ~2 points are noise; "
                     f"docs/pretraining.md, section 8)")
    else:
        lines.append("random init   not run (--random-init runs it beside); pretrained vs random init on the full tasks, "
                     "3 seeds each: docs/results.md")
    lines.append(f"sentences     {'expected':9s} {'hub.Module':11s} {'serving':9s} right")
    for text, exp, hub, srv in rows:
        ok = "yes" if exp == hub == srv else "NO"
        lines.append(f"              {LABEL_NAMES[exp]:9s} {LABEL_NAMES.get(hub, hub):11s} {LABEL_NAMES.get(srv, srv):9s} "
                     f"{ok:5s} {text}")
    lines += [
        f"              {right['hub_module']}/{right['of']} right through hub.Module, "
        f"{right['serving']}/{right['of']} through serving",
        f"written to    {out}",
        f"              pretraining run {run_dir}, exported models {pretrained}",
        f"              fine-tuned model {finetuned}, scores {os.path.join(out, 'results')}",
        f"wall time     {(time.time() - t0) / 60:.1f} minutes", "=" * 72]
    differ = [text for text, _, hub, srv in rows if hub != srv]
    if differ:  # one model, two paths: the same answers
        lines.insert(-1, f"FAILED        hub.Module and serving disagree on {len(differ)} sentence(s): {differ}")
    print("\n".join(lines), flush=True)
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2, default=str)
    return 1 if differ else 0


def _demo_configs(folder):
    """The demo's discriminator and generator configs: SHAPE and GENERATOR_SHAPE on ELECTRA-small's."""
    from .config import get_variant
    os.makedirs(folder, exist_ok=True)
    v = get_variant("chinese-electra-small")
    paths = []
    for name, cfg, shape in (("discriminator", v.discriminator, SHAPE), ("generator", v.generator, GENERATOR_SHAPE)):
        paths.append(os.path.join(folder, f"demo_{name}.json"))
        cfg.replace(**shape).to_json_file(paths[-1])
    return paths


def _random_init(configs, folder, seed=0):
    """Randomly initialised weights of the demo's shape, the baseline of the comparison."""
    import paddle
    from .config import ElectraConfig
    from .modeling import ElectraForPreTraining
    paddle.seed(seed)
    ElectraForPreTraining(*(ElectraConfig.from_json_file(c) for c in configs)).save_pretrained(folder)


if __name__ == "__main__":  # make demo
    from .cli import main
    sys.exit(main(["demo", *sys.argv[1:]]))
