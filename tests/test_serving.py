"""The hub modules' HTTP server (paddle_electra.serving): a real server on 127.0.0.1 from the shipped
example configs (every task answers as `predict`), bad requests answered in the envelope, the request
batcher. Servers bind 127.0.0.1 on a free port, are bounded in time and always stopped.

Weights and installed modules: the fixtures of test_hub.py (random weights, a temporary HUB_HOME).
"""
import copy
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from test_hub import (CONTEXT, MODULES, PY, _env, electra_home, home, hub, installed, load,  # noqa: F401,F811
                      task_dirs)


# --- serving ---------------------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url, body, raw=False, content_type="application/json"):
    data = body if raw else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # the envelope comes with 4xx codes too
        return json.loads(e.read())


def start_server(args, env, log_path, port, timeout=180):
    """`python -m paddle_electra.hub serving start ...` on 127.0.0.1; returns (process, base url).
    With -c the port is the config's (PaddleHub ignores -p then)."""
    log = open(log_path, "w")
    proc = subprocess.Popen([PY, "-m", "paddle_electra.hub", "serving", "start", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{open(log_path).read()[-3000:]}")
        try:
            urllib.request.urlopen(url + "/", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not up after {timeout}s:\n{open(log_path).read()[-3000:]}")


def stop_server(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: only what this test started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)


def _shipped_configs(module="chinese-electra-small"):
    folder = os.path.join(MODULES[module], "serving_configs")
    return {f[:-5]: json.load(open(os.path.join(folder, f), encoding="utf-8"))
            for f in sorted(os.listdir(folder)) if f.endswith(".json")}


@pytest.fixture(scope="module")
def server(installed, electra_home, task_dirs, tmp_path_factory):
    """One server for every shipped example config: each config's module entry, with its
    load_checkpoint pointed at a task dir of this run, served under the config's file name."""
    modules = {}
    for name, cfg in _shipped_configs().items():
        (key, entry), = cfg["modules_info"].items()
        entry = copy.deepcopy(entry)
        init = entry["init_args"]
        task = init.get("task")
        if task:
            init["load_checkpoint"] = task_dirs[task]
            init["directory"] = installed[key]
            key = name
        init.update(max_serving_texts=8, max_serving_chars=500)
        modules[key] = entry
    folder = tmp_path_factory.mktemp("serving")
    cfg_path = folder / "config.json"
    port = _free_port()
    cfg_path.write_text(json.dumps({"modules_info": modules, "port": port, "use_multiprocess": False},
                                   ensure_ascii=False))
    proc, url = start_server(["-c", str(cfg_path)], _env(electra_home), str(folder / "server.log"), port)
    yield {"url": url, "modules": modules, "proc": proc}
    stop_server(proc)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_shipped_configs_cover_every_task(module):
    cfgs = _shipped_configs(module)
    tasks = {e["init_args"].get("task") for c in cfgs.values() for e in c["modules_info"].values()}
    assert tasks == {None, "seq-cls", "token-cls", "text-matching", "reading-comprehension"}
    for c in cfgs.values():
        for key, entry in c["modules_info"].items():
            assert key == module and set(entry) == {"init_args", "predict_args"}


def test_serving_every_task_equals_predict(server, load, task_dirs, home):
    url, modules = server["url"], server["modules"]
    emb_key = next(k for k, e in modules.items() if not e["init_args"].get("task"))
    r = _post(f"{url}/predict/{emb_key}", {"data": [["今天是个好日子"], ["天气预报", "说今天要下雨"]]})
    assert r["status"] == "000", r
    local = load().get_embedding([["今天是个好日子"], ["天气预报", "说今天要下雨"]])
    for (p, t), (lp, lt) in zip(r["results"], local):
        np.testing.assert_allclose(p, lp, atol=1e-4)
        np.testing.assert_allclose(t, lt, atol=1e-4)
    cases = {"seq-cls": [["这个宾馆比较陈旧了，特价的房间也很一般。" * 3], ["服务很好"]],
             "text-matching": [["今天天气怎么样", "今天天气如何"]],
             "token-cls": [["张三在北京工作"], ["\002".join("李四去了上海")]],
             "reading-comprehension": [[CONTEXT, "《红楼梦》的作者是谁？"]]}
    for key, entry in modules.items():
        task = entry["init_args"].get("task")
        if not task:
            continue
        data = cases[task]
        # batch_size in the request and max_seq_len from predict_args both reach predict (PaddleHub shifted them)
        r = _post(f"{url}/predict/{key}", {"data": data, "batch_size": 2})
        assert r["status"] == "000", (key, r)
        m = hub.Module(name="chinese-electra-small", task=task, load_checkpoint=task_dirs[task],
                       **{k: v for k, v in entry["init_args"].items() if k == "label_map"})
        kw = {k: v for k, v in entry["predict_args"].items() if k in ("max_seq_len", "split_char")}
        want = m.predict(data, batch_size=2, **kw)
        if task == "reading-comprehension":  # same span; the score to float precision
            assert [{**a, "score": 0} for a in r["results"]] == [{**a, "score": 0} for a in want]
            np.testing.assert_allclose([a["score"] for a in r["results"]], [a["score"] for a in want], atol=1e-4)
        else:
            assert r["results"] == want, key
        if task == "seq-cls":
            short = _post(f"{url}/predict/{key}", {"data": data, "max_seq_len": 8, "return_prob": True})
            np.testing.assert_allclose(short["results"][1], m.predict(data, max_seq_len=8, return_prob=True)[1],
                                       atol=1e-5)
        if task == "token-cls":
            assert [len(x) for x in r["results"]] == [7, 6]


@pytest.mark.parametrize("body, match", [
    ({"data": "今天"}, "must be a list"),
    ({"data": []}, "empty"),
    ({"data": [[""]]}, "empty"),
    ({"data": [["今天", 3]]}, "must be a string"),
    ({"data": [["a"]] * 9}, "at most 8"),
    ({"data": [["长" * 501]]}, "at most 500"),
    ({"data": [["a"]], "batch_size": 0}, "batch_size"),
    ({"data": [["a"]], "max_seq_len": 100000}, "max_seq_len"),
    ({"data": [["a"]], "max_seq_len": "64"}, "max_seq_len"),
    ({"data": [["a"]], "use_gpu": "yes"}, "use_gpu"),
    ({"data": [["a"]], "colour": 1}, "unknown request field"),
    ({"text": [["a"]]}, "data"),
    (b"{not json", "JSON object"),
    (b"[1, 2]", "JSON object"),
])
def test_serving_rejects_bad_requests_in_the_envelope(server, body, match):
    url = server["url"]
    key = next(k for k, e in server["modules"].items() if e["init_args"].get("task") == "seq-cls")
    r = _post(f"{url}/predict/{key}", body, raw=isinstance(body, bytes))
    assert set(r) == {"msg", "results", "status"} and r["status"] != "000" and match in r["msg"], r
    assert server["proc"].poll() is None
    ok = _post(f"{url}/predict/{key}", {"data": [["服务很好"]]})  # and it still answers
    assert ok["status"] == "000"


def test_serving_unknown_module_and_wrong_method(server):
    r = _post(server["url"] + "/predict/no-such-module", {"data": [["a"]]})
    assert r["status"] == "111" and "no-such-module" in r["msg"]
    try:
        urllib.request.urlopen(server["url"] + "/predict/no-such-module", timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 405 and set(json.loads(e.read())) == {"msg", "results", "status"}


def test_request_batcher_merges_waiting_requests_and_splits_results():
    import threading
    from paddle_electra.serving import RequestBatcher
    calls, gate = [], threading.Event()

    def fn(data, batch_size, tag, fail=False):
        gate.wait(10)  # the first call blocks until every request is queued
        calls.append((len(data), batch_size, tag + ("!" if fail else "")))
        if fail:
            raise ValueError("boom")
        labels = [f"{tag}:{ex[0]}" for ex in data]
        return (labels, [len(ex[0]) for ex in data]) if tag == "prob" else labels

    b = RequestBatcher(fn, max_texts=6)
    reqs = [([["a"]], 1, {"tag": "x"}), ([["bb"], ["c"]], 4, {"tag": "x"}), ([["d"]], 2, {"tag": "prob"}),
            ([["e"], ["f"]], 1, {"tag": "x"}), ([["g"]] * 3, 1, {"tag": "x"}), ([["h"]], 1, {"tag": "x", "fail": True})]
    results = [None] * len(reqs)

    def send(i):
        try:
            results[i] = b(*reqs[i])
        except ValueError as e:
            results[i] = e
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(reqs))]
    threads[0].start()
    time.sleep(0.2)  # request 0 is in the model; the rest wait together
    for t in threads[1:]:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert results[0] == ["x:a"] and results[1] == ["x:bb", "x:c"] and results[3] == ["x:e", "x:f"]
    assert results[2] == (["prob:d"], [1]) and results[4] == ["x:g"] * 3
    assert isinstance(results[5], ValueError)
    assert calls[0] == (1, 1, "x")
    # requests 1, 3 and 4 (same settings) shared calls of at most 6 texts, with their largest batch_size
    x_calls = [c for c in calls[1:] if c[2] == "x"]
    assert sum(c[0] for c in x_calls) == 7 and len(x_calls) == 2 and max(c[1] for c in x_calls) == 4


def test_serving_concurrent_requests_each_get_their_own_answer(server, task_dirs, home):
    from concurrent.futures import ThreadPoolExecutor
    key = next(k for k, e in server["modules"].items() if e["init_args"].get("task") == "seq-cls")
    texts = [[f"第{i}个评论：" + "房间很干净，服务也很好。" * (i % 5 + 1)] for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda t: _post(f"{server['url']}/predict/{key}", {"data": [t], "return_prob": True}),
                                texts))
    m = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=task_dirs["seq-cls"])
    labels, probs = m.predict(texts, batch_size=8, return_prob=True)
    for a, label, prob in zip(answers, labels, probs):
        assert a["status"] == "000" and a["results"][0] == [label], a
        np.testing.assert_allclose(a["results"][1][0], prob, atol=1e-5)


@pytest.mark.slow
def test_serving_dash_m_serves_embeddings(installed, electra_home, load, tmp_path):
    port = _free_port()
    proc, url = start_server(["-m", "chinese-electra-small", "-p", str(port)], _env(electra_home),
                             str(tmp_path / "log"), port)
    try:
        r = _post(url + "/predict/chinese-electra-small", {"data": [["今天是个好日子"]], "pooling": "mean"})
        assert r["status"] == "000"
        np.testing.assert_allclose(r["results"][0][0], load().get_embedding([["今天是个好日子"]], pooling="mean")[0][0],
                                   atol=1e-4)
    finally:
        stop_server(proc)
