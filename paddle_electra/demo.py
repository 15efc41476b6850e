"""The main job end to end, offline, on the bundled sample (`make demo`):

  1. build a pretraining set from demo_data/corpus_sample.txt
  2. pretrain a small ELECTRA with the RTD trainer, two processes through paddle.distributed.launch
  3. export the discriminator
  4. fine-tune it on the bundled ChnSentiCorp sample and evaluate
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
SENTENCES = ["这个宾馆比较陈旧了，特价的房间也很一般。总体来说一般", "房间很干净，服务员态度也很好，下次还会再来。",
             "电池不耐用，屏幕也有坏点，非常失望。"]


def _log(msg):
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _run(cmd, env=None):
    _log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, env=env)


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
    p.add_argument("--pretrain-minutes", type=float, default=4.0)
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--nproc", type=int, default=2, help="pretraining processes")
    p.add_argument("--finetune-epochs", type=int, default=2)


def run(args) -> int:
    t0 = time.time()
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

    _log("1/6 building the pretraining set")
    data = os.path.join(out, "pretrain_data")
    _run(CLI + ["build-data", "--input", *corpus, "--output-dir", data, "--max-seq-length", "128",
                "--num-processes", "2"], env)

    _log(f"2/6 pretraining ({args.nproc} processes, at most {args.pretrain_minutes} minutes)")
    run_dir = os.path.join(out, "pretrain")
    configs = _small6_configs(os.path.join(out, "configs"))
    _run(CLI + ["pretrain", "--nproc-per-node", str(args.nproc), "--launch-log-dir", os.path.join(out, "launch_logs"),
                "--data-dir", data, "--output-dir", run_dir,
                "--discriminator-config", configs[0], "--generator-config", configs[1],
                "--train-batch-size", "8", "--learning-rate", "5e-4", "--warmup-steps", "100",
          "--max-steps", str(args.pretrain_steps), "--max-minutes", str(args.pretrain_minutes),
                "--save-steps", "100", "--logging-steps", "10"], env)
    report["pretraining"] = _last_jsonl(os.path.join(run_dir, "metrics.jsonl"))

    _log("3/6 exporting the discriminator and generator")
    pretrained = os.path.join(out, "models", "chinese-electra-small")
    _run(CLI + ["export", "pretraining", run_dir, pretrained], env)

    _log("4/6 fine-tuning on ChnSentiCorp")
    hp = {"task_names": ["chnsenticorp"], "max_seq_length": 128, "num_train_epochs": args.finetune_epochs,
          "learning_rate": 3e-4, "train_batch_size": 32, "do_test": False,
          "train_file": os.path.join(cls_dir, "train.tsv"), "dev_file": os.path.join(cls_dir, "dev.tsv")}
    _run(CLI + ["finetune", "--data-dir", out, "--model-name", pretrained, "--hparams", json.dumps(hp)], env)
    with open(os.path.join(out, "results", "chnsenticorp_results.json"), encoding="utf-8") as f:
        report["finetuning"] = json.load(f)
    finetuned = sorted(glob.glob(os.path.join(out, "finetuning_models", "chnsenticorp_model_*")))[-1]

    _log("5/6 PaddleHub: install the module, predict through hub.Module(name=...)")
    _run([os.path.join(os.path.dirname(PY), "hub"), "install", resource(os.path.join("hub_modules", "chinese_electra_small"))],
         env)
    code = ("import json, paddlehub as hub\n"
            f"m = hub.Module(name='chinese-electra-small', task='seq-cls', load_checkpoint={finetuned!r})\n"
            f"print(json.dumps(m.predict([[s] for s in {SENTENCES!r}], max_seq_len=128, batch_size=8, "
            "return_prob=True), ensure_ascii=False))\n")
    hub_out = subprocess.run([PY, "-c", code], env=env, check=True, capture_output=True, text=True)
    labels, probs = json.loads(hub_out.stdout.strip().splitlines()[-1])  # return_prob: [labels, probabilities]
    report["hub_module"] = [{"text": s, "label": lab, "probabilities": [round(p, 4) for p in pr]}
                            for s, lab, pr in zip(SENTENCES, labels, probs)]
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
        body = json.dumps({"data": [[s] for s in SENTENCES]}).encode()
        deadline = time.time() + 180
        while True:
            try:
                req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    report["serving"] = json.loads(r.read())
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"hub serving did not answer; see {serve_log.name}")
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
        serve_log.close()
    _log(f"  POST {url} -> {json.dumps(report['serving'], ensure_ascii=False)}")

    pre, ft = report["pretraining"], report["finetuning"]
    summary = ft.get("summary", {})
    lines = [
        "", "=" * 72, "paddle-electra demo report", "=" * 72,
        f"pretraining   {pre.get('step')} steps x {args.nproc} processes, {pre.get('tokens_per_second', 0):.0f} tokens/s; "
        f"loss {pre.get('loss', float('nan')):.3f}, MLM acc {pre.get('mlm_accuracy', float('nan')):.3f}, "
        f"disc acc {pre.get('disc_accuracy', float('nan')):.3f}, disc AUC {pre.get('disc_auc', float('nan')):.3f}",
        f"fine-tuning   ChnSentiCorp sample: {json.dumps(summary, ensure_ascii=False)}",
        f"hub.Module    labels {[r['label'] for r in report['hub_module']]} for {len(SENTENCES)} sentences",
        f"hub serving   status {report['serving'].get('status')}: {report['serving'].get('results')}",
        f"written to    {out}",
        f"              pretraining run {run_dir}, exported models {pretrained}",
        f"              fine-tuned model {finetuned}, scores {os.path.join(out, 'results')}",
        f"wall time     {(time.time() - t0) / 60:.1f} minutes", "=" * 72]
    print("\n".join(lines), flush=True)
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2, default=str)
    return 0


def _small6_configs(folder):
    """ELECTRA-small's discriminator and generator with 6 layers (pretrain/configs/small6_*.json)."""
    from .config import get_variant
    os.makedirs(folder, exist_ok=True)
    v = get_variant("chinese-electra-small")
    paths = []
    for name, cfg in (("discriminator", v.discriminator), ("generator", v.generator)):
        paths.append(os.path.join(folder, f"small6_{name}.json"))
        cfg.replace(num_hidden_layers=6).to_json_file(paths[-1])
    return paths


if __name__ == "__main__":  # make demo
    from .cli import main
    sys.exit(main(["demo", *sys.argv[1:]]))
