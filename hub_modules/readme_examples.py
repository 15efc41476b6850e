"""Run the examples of the modules' READMEs, in order, printing what the READMEs show.

    HUB_HOME=... PADDLE_ELECTRA_HOME=... python hub_modules/readme_examples.py \
        --module chinese-electra-small --data-dir ../shared/data --workdir /tmp/readme

The module must be installed (`hub install hub_modules/chinese_electra_small`) and its weights be in
$PADDLE_ELECTRA_HOME. Fine-tuning runs a few steps on small samples of the data: enough to show
every step working, not to train a useful model.
"""
import argparse
import json
import os

import paddle
import paddlehub as hub
from paddlehub.datasets.base_nlp_dataset import SeqLabelingDataset, TextClassificationDataset

from paddle_electra.hub import ReadingComprehensionDataset

MSRA_LABELS = ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O"]


def section(title):
    print(f"\n===== {title} =====", flush=True)


def sample_chnsenticorp(data_dir, out, n_train, n_dev):
    os.makedirs(out, exist_ok=True)
    for mode, n in (("train", n_train), ("dev", n_dev)):
        with open(os.path.join(data_dir, "chnsenticorp", f"{mode}.tsv"), encoding="utf-8") as f:
            lines = f.readlines()[:n + 1]  # header + n
        with open(os.path.join(out, f"{mode}.tsv"), "w", encoding="utf-8") as f:
            f.writelines(lines)


def sample_msra(data_dir, out, n):
    os.makedirs(out, exist_ok=True)
    rows, chars, tags = [], [], []
    with open(os.path.join(data_dir, "msra_ner", "train.txt"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                if chars:
                    rows.append("\002".join(chars) + "\t" + "\002".join(tags))
                    chars, tags = [], []
                if len(rows) == n:
                    break
                continue
            c, t = line.split()
            chars.append(c)
            tags.append(t)
    with open(os.path.join(out, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("text_a\tlabel\n" + "\n".join(rows) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--module", default="chinese-electra-small")
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--workdir", required=True)
    p.add_argument("--steps-data", type=int, default=32, help="training examples per fine-tuning sample")
    args = p.parse_args()
    name, work = args.module, args.workdir

    section("embeddings")
    model = hub.Module(name=name)
    data = [["今天是个好日子"], ["天气预报说今天要下雨"]]
    results = model.get_embedding(data)
    for text, (pooled, tokens) in zip(data, results):
        print(f"{text}: pooled {len(pooled)} floats {[round(x, 4) for x in pooled[:3]]}..., "
              f"token vectors {len(tokens)} x {len(tokens[0])}")

    section("seq-cls: fine-tune with hub.Trainer (ChnSentiCorp layout)")
    sample_chnsenticorp(args.data_dir, os.path.join(work, "chnsenticorp"), args.steps_data, 16)
    model = hub.Module(name=name, task="seq-cls", num_classes=2)
    tokenizer = model.get_tokenizer()
    train = TextClassificationDataset(os.path.join(work, "chnsenticorp"), tokenizer, max_seq_len=128, mode="train",
                                      data_file="train.tsv", label_list=["0", "1"], is_file_with_header=True)
    dev = TextClassificationDataset(os.path.join(work, "chnsenticorp"), tokenizer, max_seq_len=128, mode="dev",
                                    data_file="dev.tsv", label_list=["0", "1"], is_file_with_header=True)
    optimizer = paddle.optimizer.AdamW(learning_rate=5e-5, parameters=model.parameters())
    trainer = hub.Trainer(model, optimizer, checkpoint_dir=os.path.join(work, "chnsenticorp_ckpt"), use_gpu=False)
    trainer.train(train, epochs=1, batch_size=8, eval_dataset=dev, save_interval=1, log_interval=2)

    section("seq-cls: predict with the checkpoint")
    model = hub.Module(name=name, task="seq-cls",
                       load_checkpoint=os.path.join(work, "chnsenticorp_ckpt", "best_model", "model.pdparams"),
                       label_map={0: "negative", 1: "positive"})
    data = [["这个宾馆比较陈旧了，特价的房间也很一般。总体来说一般"],
            ["作为老的四星酒店，房间依然很整洁，相当不错。机场接机服务很好。"]]
    print(model.predict(data, max_seq_len=128, batch_size=2, return_prob=True))
    model.save_pretrained(os.path.join(work, "chnsenticorp_dir"))
    print(sorted(os.listdir(os.path.join(work, "chnsenticorp_dir"))))

    section("token-cls: fine-tune (MSRA_NER layout) and predict")
    sample_msra(args.data_dir, os.path.join(work, "msra"), args.steps_data)
    model = hub.Module(name=name, task="token-cls", label_map=dict(enumerate(MSRA_LABELS)))
    ner = SeqLabelingDataset(os.path.join(work, "msra"), model.get_tokenizer(), max_seq_len=128, mode="train",
                             data_file="train.tsv", label_list=MSRA_LABELS, is_file_with_header=True)
    trainer = hub.Trainer(model, paddle.optimizer.AdamW(learning_rate=5e-5, parameters=model.parameters()),
                          checkpoint_dir=os.path.join(work, "msra_ckpt"))
    trainer.train(ner, epochs=1, batch_size=8, log_interval=2)
    text = "新华社北京5月7日电国务院副总理李岚清今天在中南海会见了美国前商务部长芭芭拉·弗兰克林。"
    labels = model.predict([[text], ["\002".join(["李岚清", "会见", "了", "弗兰克林"])]])
    print(list(zip(text, labels[0]))[:12], "...")
    print(len(text), "characters ->", len(labels[0]), "labels;", "4 tokens ->", labels[1])

    section("text-matching")
    model = hub.Module(name=name, task="text-matching", label_map={0: "different", 1: "similar"})
    print(model.predict([["喜欢打篮球的男生喜欢什么样的女生", "爱打篮球的男生喜欢什么样的女生"],
                         ["我手机丢了，我想换个手机", "我想买个新手机，求推荐"]], return_prob=True))

    section("reading-comprehension: fine-tune (CMRC 2018 trial sample) and predict")
    with open(os.path.join(args.data_dir, "cmrc2018", "trial.json"), encoding="utf-8") as f:
        squad = json.load(f)
    squad = {"data": squad["data"][:4]}
    model = hub.Module(name=name, task="reading-comprehension")
    rc = ReadingComprehensionDataset(squad, model.get_tokenizer(), max_seq_len=256)
    print(len(rc), "windows")
    trainer = hub.Trainer(model, paddle.optimizer.AdamW(learning_rate=5e-5, parameters=model.parameters()),
                          checkpoint_dir=os.path.join(work, "cmrc_ckpt"))
    trainer.train(rc, epochs=1, batch_size=8, log_interval=2)
    model.save_pretrained(os.path.join(work, "cmrc2018_dir"))
    para = squad["data"][0]["paragraphs"][0]
    out = model.predict([[para["context"], para["qas"][0]["question"]]], max_seq_len=256)
    print(para["qas"][0]["question"], "->", out)
    r = out[0]
    print("context[start:end] == answer:", para["context"][r["start"]:r["end"]] == r["answer"])


if __name__ == "__main__":
    main()
