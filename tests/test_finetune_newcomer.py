"""The newcomer's fine-tuning path: a user's own TSV (files relative to the current folder, --labels),
the folder it writes (its task in config.json, the model card), `evaluate`'s own results file, and the
pipeline on the result; --help listing tasks and hparams; misspellings answered with "did you mean"."""
import json
import os

import paddle
import pytest

import paddle_electra
from paddle_electra import cli, model_card
from paddle_electra.config import ElectraConfig
from paddle_electra.modeling import ElectraModel

TINY = ElectraConfig(embedding_size=32, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=128)
HP = json.dumps({"max_seq_length": 12, "train_batch_size": 4, "num_train_epochs": 1, "device": "cpu",
                 "eval_batch_size": 8})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    paddle.seed(0)
    ElectraModel(TINY).save_pretrained(str(tmp_path / "base"))
    mine = tmp_path / "mydata"
    mine.mkdir()
    rows = ["label\ttext_a"] + [f"pos\t好好{c}" for c in "甲乙丙丁"] + [f"neg\t坏坏{c}" for c in "甲乙丙丁"]
    for split in ("train", "dev"):
        (mine / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _finetune(*extra):
    return cli.main(["finetune", "--model-name", "base", "--task", "chnsenticorp", "--train-file", "mydata/train.tsv",
                     "--dev-file", "mydata/dev.tsv", "--labels", "neg,pos", "--hparams", HP, *extra])


def test_own_tsv_labels_card_evaluate_and_pipeline(workdir, capsys):
    assert _finetune() == 0
    model = workdir / "finetuning_models" / "chnsenticorp_model_1"
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["finetuning_task"] == "seq-cls" and cfg["id2label"] == {"0": "neg", "1": "pos"}
    assert cfg["finetuning"]["dataset"] == "chnsenticorp"
    assert cfg["finetuning"]["train_file"] == str(workdir / "mydata" / "train.tsv")  # resolved from the cwd
    card = (model / "README.md").read_text(encoding="utf-8")
    assert card.startswith(model_card.MARKER)
    for want in ("seq-cls (data set chnsenticorp)", "neg, pos", str(workdir / "mydata" / "dev.tsv"),
                 "| dev | accuracy |", "paddle-electra finetune --model-name base --task chnsenticorp",
                 f"| paddle-electra | {paddle_electra.__version__} |"):
        assert want in card, want
    printed = capsys.readouterr().out
    assert "chnsenticorp dev: accuracy: " in printed

    results = workdir / "results" / "chnsenticorp_results.json"
    before = results.read_bytes()
    assert cli.main(["evaluate", "--model-name", str(model), "--task", "chnsenticorp", "--dev-file",
                     "mydata/dev.tsv", "--hparams", HP]) == 0
    assert results.read_bytes() == before  # the training run's results are never replaced
    (own,) = (workdir / "results").glob("chnsenticorp_eval_results_*.json")
    evaluated = json.loads(own.read_text())
    trained = json.loads(before)
    assert evaluated["trials"][0]["dev"]["accuracy"] == trained["trials"][0]["dev"]["accuracy"]
    out = capsys.readouterr().out
    assert "chnsenticorp dev: accuracy: " in out and own.name in out

    assert cli.main(["evaluate", "--model-name", str(model), "--task", "chnsenticorp", "--dev-file",
                     "mydata/dev.tsv", "--hparams", HP]) == 0  # at once again: a file of its own
    assert len(list((workdir / "results").glob("chnsenticorp_eval_results_*.json"))) == 2

    clf = paddle_electra.pipeline(None, str(model), engine="paddle")
    assert clf.task == "seq-cls" and clf("好好甲")["label"] in ("neg", "pos")


def test_a_users_readme_in_the_model_folder_is_kept(workdir):
    model = workdir / "finetuning_models" / "chnsenticorp_model_1"
    assert _finetune() == 0
    (model / "README.md").write_text("# my model\n", encoding="utf-8")
    assert _finetune() == 0
    assert (model / "README.md").read_text(encoding="utf-8") == "# my model\n"


@pytest.mark.parametrize("argv, message", [
    (["--task", "chnsentcorp"], "unknown task 'chnsentcorp' (did you mean 'chnsenticorp'?)"),
    (["--set", "learning_rat=1e-4"], "unknown hparam(s) ['learning_rat'] (did you mean 'learning_rate'?)"),
    (["--labels", "neg"], "labels must name at least two distinct labels"),
    (["--train-file", "nope.tsv"], "--train-file nope.tsv: no such file"),
])
def test_misspellings_are_one_line_errors_with_a_suggestion(workdir, capsys, argv, message):
    assert cli.main(["finetune", "--model-name", "base", "--hparams", HP, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("paddle-electra finetune: error: ") and message in err


def test_labels_not_in_the_data_are_named(workdir, capsys):
    assert _finetune("--labels", "bad,good") == 1
    assert "label 'pos' is not one of ['bad', 'good']" in capsys.readouterr().err


def test_finetune_help_lists_tasks_and_hparams_with_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["finetune", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for want in ("chnsenticorp (seq-cls)", "msra_ner (token-cls)", "cmrc2018 (reading-comprehension)",
                 "learning_rate=null", "train_batch_size=32", "warmup_proportion=0.1", "labels=null",
                 "--train-file FILE", "--labels A,B,C"):
        assert want in text, want
