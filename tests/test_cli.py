"""The `paddle-electra` command: every subcommand answers --help from the installed console script,
a few run end to end, errors become one line and exit code 1, and the repo scripts are wrappers."""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from paddle_electra import cli
from paddle_electra.distributed import WORKER_SCRIPT

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONSOLE = os.path.join(os.path.dirname(sys.executable), "paddle-electra")


def _pe(*argv, check=True, **kw):
    r = subprocess.run([CONSOLE, *argv], capture_output=True, text=True, **kw)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def console():
    if not os.path.exists(CONSOLE):
        pytest.skip(f"no console script at {CONSOLE} (package not installed in this environment)")
    return CONSOLE


@pytest.mark.parametrize("command", list(cli.SUBCOMMANDS))
def test_every_subcommand_has_help(console, command):
    r = _pe(command, "--help")
    assert r.stdout.startswith(f"usage: paddle-electra {command} ")
    assert cli.SUBCOMMANDS[command][0] in " ".join(r.stdout.split())  # its description


def test_the_subcommands_of_the_issue_are_there():
    want = {"build-data", "pretrain", "finetune", "evaluate", "serve", "convert", "export", "init", "list", "demo"}
    assert want <= set(cli.SUBCOMMANDS)


def test_list_and_init_and_export(console, tmp_path):
    rows = json.loads(_pe("list", "--json").stdout)
    assert "chinese-electra-small" in {r["name"] for r in rows}
    model = tmp_path / "small1"
    _pe("init", "chinese-electra-small", "--output", str(model), "--num-hidden-layers", "1")
    assert (model / "config.json").exists() and (model / "generator_config.json").exists()
    out = tmp_path / "pdparams"
    _pe("export", "paddlenlp", "--input", str(model), "--output", str(out))
    assert (out / "model_state.pdparams").exists()


def test_errors_are_one_line_and_exit_1(console, tmp_path):
    r = _pe("build-data", "--output-dir", str(tmp_path / "d"), check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "paddle-electra build-data: error: give --input, --input-docs-per-line and/or --task-texts"
    r = _pe("finetune", "--data-dir", str(tmp_path), "--model-name", "x", "--set", "no_such_hparam=1", check=False)
    assert r.returncode == 1 and "unknown hparam(s) ['no_such_hparam']" in r.stderr and "Traceback" not in r.stderr
    r = _pe("finetune", "--data-dir", str(tmp_path), "--model-name", "x", "--set", "seed", check=False)
    assert r.returncode == 1 and "--set 'seed': expected KEY=VALUE" in r.stderr


def _tiny_sentiment_setup(tmp_path):
    """A 1-layer model (tmp_path/init) and an 8-row ChnSentiCorp train/dev under tmp_path: its path."""
    model = tmp_path / "init"
    _pe("init", "chinese-electra-small", "--output", str(model), "--num-hidden-layers", "1")
    rows = ["label\ttext_a"] + [f"1\t好好{c}" for c in "甲乙丙丁"] + [f"0\t坏坏{c}" for c in "甲乙丙丁"]
    data = tmp_path / "finetuning_data" / "chnsenticorp"
    data.mkdir(parents=True)
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return model


@pytest.mark.slow  # the same path in-process: test_finetune_newcomer.py::test_own_tsv_labels_card_evaluate_and_pipeline
def test_finetune_then_evaluate(console, tmp_path):
    """fine-tune a 1-layer model for a few steps, then `evaluate` the saved model: same dev score."""
    model = _tiny_sentiment_setup(tmp_path)
    hp = json.dumps({"task_names": ["chnsenticorp"], "max_seq_length": 8, "train_batch_size": 4,
                     "num_train_epochs": 1, "do_test": False, "device": "cpu"})
    _pe("finetune", "--data-dir", str(tmp_path), "--model-name", str(model), "--hparams", hp)
    trained = json.loads((tmp_path / "results" / "chnsenticorp_results.json").read_text())
    finetuned = tmp_path / "finetuning_models" / "chnsenticorp_model_1"
    assert finetuned.is_dir()
    _pe("evaluate", "--data-dir", str(tmp_path), "--model-name", str(finetuned), "--hparams", hp,
        "--set", f"results_dir={tmp_path / 'eval'}")
    (evaluated_path,) = (tmp_path / "eval").glob("chnsenticorp_eval_results_*.json")  # evaluate's own file
    evaluated = json.loads(evaluated_path.read_text())
    assert "train_steps" in trained["trials"][0] and "train_steps" not in evaluated["trials"][0]  # no training
    assert evaluated["hparams"]["do_train"] is False
    # the same model and dev set: the same decisions (accuracy), whatever the float rounding
    assert evaluated["trials"][0]["dev"]["accuracy"] == trained["trials"][0]["dev"]["accuracy"]


@pytest.mark.slow  # kept out of the default run's 10 minutes (make test-all runs it)
def test_finetune_resume_keeps_the_finished_trials(console, tmp_path):
    """issue 23 item 9: a run stopped between trials redid every trial; --resume keeps those recorded with
    the same hparams (and their saved models) and runs the rest; other hparams are refused in one line."""
    model = _tiny_sentiment_setup(tmp_path)
    hp = json.dumps({"task_names": ["chnsenticorp"], "max_seq_length": 8, "train_batch_size": 4, "num_trials": 2,
                     "num_train_epochs": 1, "do_test": False, "device": "cpu"})
    cmd = ("finetune", "--data-dir", str(tmp_path), "--model-name", str(model), "--hparams", hp)
    _pe(*cmd)
    results = tmp_path / "results" / "chnsenticorp_results.json"
    full = json.loads(results.read_text())
    assert [t["trial"] for t in full["trials"]] == [1, 2]
    stopped = dict(full, trials=[dict(full["trials"][0], marker="not retrained")])  # stopped after trial 1
    results.write_text(json.dumps(stopped))
    out = _pe(*cmd, "--resume")
    assert "resuming after trial 1 of 2" in out.stdout
    resumed = json.loads(results.read_text())
    assert resumed["trials"][0] == stopped["trials"][0] and resumed["trials"][1]["trial"] == 2
    assert "train_steps" in resumed["trials"][1] and "marker" not in resumed["trials"][1]
    r = _pe(*cmd, "--resume", "--set", "learning_rate=0.5", check=False)
    assert r.returncode == 1 and "recorded with other hparams (learning_rate)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def launcher_calls(monkeypatch):
    """The launcher's commands, recorded instead of run."""
    calls = []
    monkeypatch.delenv("PADDLE_TRAINER_ID", raising=False)
    real_run = subprocess.run

    def run(cmd, **kw):  # only the launcher's command is recorded (importing paddle runs others)
        if isinstance(cmd, list) and "paddle.distributed.launch" in cmd:
            calls.append(cmd)
            return subprocess.CompletedProcess(cmd, 0)
        return real_run(cmd, **kw)
    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_pretrain_nproc_reruns_itself_under_the_launcher(launcher_calls, tmp_path):
    calls = launcher_calls
    argv = ["pretrain", "--data-dir", "D", "--output-dir", str(tmp_path), "--model", "chinese-electra-small",
            "--nproc-per", "2", "--max-steps", "3"]  # abbreviated, as argparse allows
    assert cli.main(argv) == 0
    (cmd,) = calls
    assert cmd[:6] == [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir"]
    assert cmd[6] == str(tmp_path / "launch_logs")
    assert cmd[7] == WORKER_SCRIPT and os.path.exists(WORKER_SCRIPT) and cmd[8] == "pretrain"
    assert cmd[9:] == ["--data-dir", "D", "--output-dir", str(tmp_path), "--model", "chinese-electra-small",
                       "--max-steps", "3"]


def test_finetune_nproc_reruns_itself_under_the_launcher(launcher_calls, tmp_path, capsys):
    hp = json.dumps({"task_names": ["chnsenticorp"], "train_batch_size": 32})
    argv = ["finetune", "--data-dir", str(tmp_path), "--model-name", "M", "--hparams", hp, "--nproc-per-node", "2",
            "--set", "seed=3"]
    assert cli.main(argv) == 0
    (cmd,) = launcher_calls
    assert cmd[:6] == [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir"]
    assert cmd[6] == str(tmp_path / "results" / "launch_logs")
    assert cmd[7:] == [WORKER_SCRIPT, "finetune", "--data-dir", str(tmp_path), "--model-name", "M", "--hparams", hp,
                       "--set", "seed=3"]
    # a global batch that does not split over the processes: refused before any process starts
    argv[argv.index("--nproc-per-node") + 1] = "3"
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "train_batch_size 32 is not divisible by the 3 processes" in err, err
    assert len(launcher_calls) == 1


@pytest.mark.parametrize("script,command", [("pretrain/run_pretraining.py", "pretrain"),
                                            ("pretrain/build_pretraining_dataset.py", "build-data"),
                                            ("finetune/run_finetuning.py", "finetune"),
                                            ("convert/convert_tf_checkpoint.py", "convert tf"),
                                            ("convert/convert_hf_checkpoint.py", "convert hf")])
def test_repo_scripts_are_wrappers_of_the_cli(script, command):
    r = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: paddle-electra {command} ")


def test_no_system_exit_in_the_library():
    """SystemExit / sys.exit raised only in the CLI layer and in `if __name__ == "__main__"` blocks. One
    exception: a gunicorn worker whose app fails to load ends its own (forked) process with gunicorn's
    APP_LOAD_ERROR code, the protocol by which the master learns to stop."""
    offenders = []
    for p in (ROOT / "paddle_electra").rglob("*.py"):
        text = p.read_text(encoding="utf-8").split('if __name__ == "__main__":')[0]
        text = text.replace("sys.exit(Arbiter.APP_LOAD_ERROR)", "")
        if p.name != "cli.py" and re.search(r"raise SystemExit|sys\.exit\(", text):
            offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []
