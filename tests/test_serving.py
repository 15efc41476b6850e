"""The hub modules' HTTP server (paddle_electra.serving): a real server on 127.0.0.1 from the shipped
example configs (every task answers as `predict`), bad requests answered in the envelope, the request
batcher. Servers bind 127.0.0.1 on a free port, are bounded in time and always stopped.

Weights and installed modules: the fixtures of test_hub.py (random weights, a temporary HUB_HOME).
"""
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from test_hub import (CONTEXT, MODULES, PY, _env, electra_home, home, hub, installed, load,  # noqa: F401,F811
                      paddle, task_dirs)


# --- serving ---------------------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url, body=None, raw=False, content_type="application/json"):
    """-> (HTTP code, the JSON body); GET without a body."""
    data = None if body is None else body if raw else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:  # the envelope comes with 4xx codes too
        return e.code, json.loads(e.read())


def _post(url, body, raw=False, content_type="application/json"):
    return _call(url, body, raw, content_type)[1]


def _raw(port, payload: bytes, timeout=15):
    """Bytes sent on a socket as they are -> (HTTP code, JSON body) of the answer (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _envelope(r):
    return isinstance(r, dict) and set(r) == {"msg", "results", "status"}


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
    ({"data": [["\x00\x01\x02"]]}, "data[0][0] is empty (it holds no printable character)"),  # issue 23 item 8
    ({"data": [["ok"], ["\u200b \x7f"]]}, "data[1][0] is empty"),
    ({"data": [["ok"]], "pooling": "mean"}, "pooling is a field of the embeddings module"),  # was ignored
    ({"data": [["今天", 3]]}, "must be a string"),
    ({"data": [["a"]] * 9}, "at most 8"),
    ({"data": [["长" * 501]]}, "at most 500"),
    ({"data": [["a"]], "batch_size": 0}, "batch_size"),
    ({"data": [["a"]], "max_seq_len": 100000}, "max_seq_len"),
    ({"data": [["a"]], "max_seq_len": "64"}, "max_seq_len"),
    ({"data": [["a"]], "use_gpu": "yes"}, "use_gpu"),
    pytest.param({"data": [["a"]], "use_gpu": True}, "no GPU", marks=pytest.mark.skipif(
        paddle.device.cuda.device_count() > 0, reason="a GPU is there")),
    ({"data": [["a"]], "colour": 1}, "unknown request field"),
    ({"text": [["a"]]}, "data"),
    (b"{not json", "JSON object"),
    (b"[1, 2]", "JSON object"),
    ({"data": [["ok"], ["a\ud800b"]]}, "data[1][0] is not valid Unicode"),  # the tokenizer takes no lone surrogate
    ({"data": [["ok"]], "split_char": "\udfff"}, "split_char is not valid Unicode"),
    ({"data": [["ok"]], "\ud800": 1}, "a field name of the request is not valid Unicode"),
    (b'{"data": [["\\ud800"]]}', "data[0][0] is not valid Unicode"),
    (b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    (b'{"data": [["a"]], "max_seq_len": 1' + b"0" * 5000 + b"}", "not JSON"),
])
def test_serving_rejects_bad_requests_in_the_envelope(server, body, match):
    url = server["url"]
    key = next(k for k, e in server["modules"].items() if e["init_args"].get("task") == "seq-cls")
    code, r = _call(f"{url}/predict/{key}", body, raw=isinstance(body, bytes))
    assert code == 400 and _envelope(r) and r["status"] != "000" and match in r["msg"], (code, r)
    assert server["proc"].poll() is None
    ok = _post(f"{url}/predict/{key}", {"data": [["服务很好"]]})  # and it still answers
    assert ok["status"] == "000"


def test_serving_unknown_module_wrong_method_and_health(server):
    code, r = _call(server["url"] + "/predict/no-such-module", {"data": [["a"]]})
    assert code == 404 and r["status"] == "111" and "no-such-module" in r["msg"]
    code, r = _call(server["url"] + "/predict/no-such-module")  # GET
    assert code == 405 and _envelope(r)
    code, r = _call(server["url"] + "/no/such/route")
    assert code == 404 and _envelope(r)
    code, r = _call(server["url"] + "/health")
    assert code == 200 and r["status"] == "000" and r["results"]["modules"] == sorted(server["modules"])


def _send_while_the_first_runs(batcher, reqs, gate):
    """Each request from its own thread: request 0 first (its call waits for `gate`), the others while
    it runs, so that they wait together; -> each one's result or ValueError."""
    import threading
    results = [None] * len(reqs)

    def send(i):
        try:
            results[i] = batcher(*reqs[i])
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
    return results


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
    results = _send_while_the_first_runs(b, reqs, gate)
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


def test_request_batcher_retries_a_failed_merged_call_per_request():
    import threading
    from paddle_electra.serving import RequestBatcher
    gate, calls = threading.Event(), []

    def fn(data, batch_size):
        gate.wait(10)
        calls.append(len(data))
        if any(ex[0] == "poison" for ex in data):
            raise ValueError("poison")
        return [ex[0].upper() for ex in data]

    b = RequestBatcher(fn, max_texts=100)
    reqs = [[["a"]], [["b"], ["c"]], [["poison"]], [["d"]], [["poison"], ["e"]], [["f"]]]
    results = _send_while_the_first_runs(b, [(r, 1, {}) for r in reqs], gate)
    assert results[0] == ["A"] and results[1] == ["B", "C"] and results[3] == ["D"] and results[5] == ["F"]
    assert isinstance(results[2], ValueError) and isinstance(results[4], ValueError)
    assert calls[:2] == [1, 7]  # the merged call of requests 1-5 failed, then each ran alone
    assert sorted(calls[2:]) == [1, 1, 1, 2, 2]


def test_poisoned_requests_fail_alone_among_concurrent_valid_ones(server):
    """Requests the checks pass but the model cannot take (a question longer than max_seq_len leaves no
    room for the context) merged with valid ones: only they fail, with 400 and the reason; and lone
    surrogates are stopped by the checks."""
    from concurrent.futures import ThreadPoolExecutor
    url, mods = server["url"], server["modules"]
    rc = next(k for k, e in mods.items() if e["init_args"].get("task") == "reading-comprehension")
    cls = next(k for k, e in mods.items() if e["init_args"].get("task") == "seq-cls")
    jobs = []
    for i in range(36):
        if i % 6 == 0:
            jobs.append((rc, [[CONTEXT, "作者是谁" * 20]], "bad"))
        elif i % 6 == 3:
            jobs.append((cls, [["好"], [f"评论{i}\ud800"]], "bad"))
        else:
            jobs.append((rc, [[CONTEXT, f"第{i}个问题：作者是谁？"]], "ok") if i % 2 else
                        (cls, [[f"第{i}个评论：房间很干净"]], "ok"))
    with ThreadPoolExecutor(36) as pool:
        answers = list(pool.map(lambda j: _call(f"{url}/predict/{j[0]}", {"data": j[1], "max_seq_len": 48}), jobs))
    for (key, data, kind), (code, r) in zip(jobs, answers):
        assert _envelope(r), r
        if kind == "ok":
            assert code == 200 and r["status"] == "000" and len(r["results"]) == len(data), r
        else:
            assert code == 400 and r["status"] == "101", r
            assert ("max_seq_len" in r["msg"]) if key == rc else ("data[1][0] is not valid Unicode" in r["msg"]), r


# --- limits ------------------------------------------------------------------------------------------
READ_TIMEOUT = 2.0
MAX_CONNECTIONS = 32  # per process
MAX_BODY = 65536
LIMITS = ["--read-timeout", str(READ_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS), "--max-body-bytes",
          str(MAX_BODY), "--max-texts", "16", "--max-text-chars", "1000"]


@pytest.fixture(scope="module")
def limited(installed, electra_home, tmp_path_factory):
    """The embeddings module served with small limits."""
    port = _free_port()
    log = tmp_path_factory.mktemp("limited") / "server.log"
    proc, url = start_server(["-m", "chinese-electra-small", "-p", str(port), *LIMITS], _env(electra_home),
                             str(log), port)
    yield {"url": url, "port": port, "proc": proc}
    stop_server(proc)


def _head(content_length: str, body: bytes = b""):
    return (b"POST /predict/chinese-electra-small HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + (b"Content-Length: %s\r\n" % content_length.encode() if content_length else b"")
            + b"Connection: close\r\n\r\n" + body)


def test_body_size_and_content_length_are_answered(limited):
    url, port = limited["url"], limited["port"]
    code, r = _call(f"{url}/predict/chinese-electra-small", {"data": [["长" * 900]] * 16})  # > 64 KiB
    assert code == 413 and r["status"] == "413", r
    body = b'{"data": [["a"]]}'
    for length, want in [("-1", 400), ("abc", 400), (str(10 ** 12), 413), ("", 400)]:
        code, r = _raw(port, _head(length, body))
        assert code == want and _envelope(r), (length, code, r)
    code, r = _raw(port, _head(str(len(body)), body))
    assert code == 200 and r["status"] == "000"
    code, r = _call(f"{url}/predict/chinese-electra-small", {"data": [["a"]] * 17})
    assert code == 400 and "data has 17 items; at most 16" in r["msg"]
    code, r = _call(f"{url}/predict/chinese-electra-small", {"data": [["a" * 1001]]})
    assert code == 400 and "data[0][0] has 1001 characters; at most 1000" in r["msg"]


def _malformed_bodies_are_400(port):
    """issue 23 item 8: a malformed chunk size was HTTP 500; a body shorter than its Content-Length, then
    EOF, was answered 200 on gunicorn."""
    chunked = (b"POST /predict/chinese-electra-small HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
               b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n")
    code, r = _raw(port, chunked)
    assert code == 400 and _envelope(r), (code, r)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(_head("100", b'{"data": [["a"]]}'))
        s.shutdown(socket.SHUT_WR)  # EOF after 17 of the 100 bytes
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    if data:  # an answer at all must say 400 (closing without one is fine too)
        head, _, body = data.partition(b"\r\n\r\n")
        assert int(head.split()[1]) == 400 and _envelope(json.loads(body)), data[:300]


def test_malformed_bodies_are_answered_400(limited):
    _malformed_bodies_are_400(limited["port"])


def _closed_after(sock, trickle: bytes = b"", limit=4 * READ_TIMEOUT) -> float:
    """Seconds until the server closes `sock` (sending `trickle` a byte at a time meanwhile)."""
    start, sock_timeout = time.time(), 0.25
    sock.settimeout(sock_timeout)
    i = 0
    while time.time() - start < limit:
        try:
            if i < len(trickle):
                sock.sendall(trickle[i:i + 1])
                i += 1
            if sock.recv(1 << 16) == b"":
                return time.time() - start
        except socket.timeout:
            continue
        except OSError:  # reset
            return time.time() - start
    return float("inf")


def test_idle_and_slowloris_connections_are_dropped(limited):
    port = limited["port"]
    slow_head = _head("20")[:-len(b"Connection: close\r\n\r\n")] + b"X-Padding: " + b"x" * 100
    cases = {"idle": b"", "slow head": slow_head, "slow body": _head("200", b'{"data": [["' + b"a" * 150)}
    for name, trickle in cases.items():
        with socket.create_connection(("127.0.0.1", port)) as s:
            took = _closed_after(s, trickle)
        assert READ_TIMEOUT * 0.8 < took < READ_TIMEOUT + 1.5, (name, took)
    assert _call(limited["url"] + "/health")[0] == 200


def test_connections_beyond_the_limit_are_answered_503(limited):
    port, url = limited["port"], limited["url"]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        code, r = _raw(port, _head("17", b'{"data": [["a"]]}'))
        assert code == 503 and r["status"] == "503", r
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    assert _call(f"{url}/predict/chinese-electra-small", {"data": [["a"]]})[0] == 200


def _chunked_over_the_limit(port, size=5 * 1024 * 1024):
    """issue 23 item 4: `{"data":[["好"]]}` + `size` bytes of spaces + GARBAGE sent chunked (64 KiB chunks,
    reading meanwhile) -> (HTTP code, JSON body, seconds until the server closed the connection after it
    answered, inf if it did not within 10 s). gunicorn answered 200 (the body cut at the limit is valid
    JSON); the one-process server 400 "not JSON", and it never closed the connection."""
    body = '{"data":[["好"]]}'.encode() + b" " * size + b"GARBAGE"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /predict/chinese-electra-small HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
              b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    data, closed_after, answered = b"", float("inf"), None
    try:
        s.setblocking(False)
        chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
        stream = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        sent, deadline = 0, time.time() + 30
        while time.time() < deadline:
            if sent < len(stream) and answered is None:
                try:
                    sent += s.send(stream[sent:sent + 65536])
                except BlockingIOError:
                    pass
                except OSError:  # the server closed: the answer may be in our buffer
                    sent = len(stream)
            try:
                chunk = s.recv(1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                break
            if not chunk:
                closed_after = time.time() - answered if answered else 0.0
                break
            data += chunk
            if answered is None and b"\r\n\r\n" in data:
                answered, deadline = time.time(), time.time() + 10
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(rest), closed_after


def test_a_chunked_body_over_the_limit_is_413_and_closed(limited):
    code, r, closed_after = _chunked_over_the_limit(limited["port"])
    assert code == 413 and r["status"] == "413" and f"limit of {MAX_BODY} bytes" in r["msg"], (code, r)
    assert closed_after < 3, closed_after
    assert _call(limited["url"] + "/health")[0] == 200


def _threads(pid):
    """Threads of a process and its children (gunicorn's workers)."""
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    return len(os.listdir(f"/proc/{pid}/task")) + sum(_threads(int(c)) for c in children)


def _valid_requests_beside_held_connections(server, idle=20, slow=5):
    """issue 23 item 1: with `idle` connections that never send a byte and `slow` ones sending their
    head a line every 0.5 s (each reopened when dropped: held all along), valid requests are answered
    within 2 s, and the held connections hold no thread of the server. gunicorn's gthread workers gave
    each new connection a thread that waited for its first byte for 5 s (valid requests waited in line
    behind them), the one-process server a thread per connection."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from serving_load import HeldConnections
    url = server["url"] + "/predict/chinese-electra-small"
    for _ in range(2):  # warm: every worker has run a request
        assert _call(url, {"data": [["你好"]]})[0] == 200
    before = _threads(server["proc"].pid)
    held = HeldConnections("127.0.0.1", server["port"], "/predict/chinese-electra-small", idle, slow, 0.5)
    held.start()
    try:
        time.sleep(1.0)
        grown = _threads(server["proc"].pid) - before
        took = []
        for _ in range(8):
            start = time.time()
            code, r = _call_within(url, {"data": [["你好"]]}, timeout=10)
            took.append(time.time() - start)
            assert code == 200 and r["status"] == "000", (code, r, took)
        held_now = held.held()
    finally:
        held.stop()
    assert max(took) < 2.0, took
    assert held_now == idle + slow and grown < 5, (held_now, grown, held.counts)


def _call_within(url, body, timeout):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_valid_requests_beside_idle_and_slow_connections(limited):
    _valid_requests_beside_held_connections(limited)


# --- start-up ---------------------------------------------------------------------------------------
def _start_fails(args, env, timeout=120):
    out = subprocess.run([PY, "-m", "paddle_electra.hub", "serving", "start", *args], env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    return [line for line in out.stderr.splitlines() if line.strip()][-1]


def _main_fails(args, capsys):
    """The same in this process (faster): a non-zero exit and the error's line."""
    from paddle_electra.serving import main
    try:
        code = main(["serving", "start", *args])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip()][-1]


def test_start_up_errors_are_one_line(installed, electra_home, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"modules_info": {"chinese-electra-small": {}},')
    assert "is not valid JSON" in _main_fails(["-c", str(bad)], capsys)
    assert "does not exist" in _main_fails(["-c", str(tmp_path / "missing.json")], capsys)
    assert "expected one argument" in _main_fails(["-m", "chinese-electra-small", "--host"], capsys)
    assert "expected a positive int" in _main_fails(["-m", "chinese-electra-small", "--workers", "0"], capsys)
    # an unknown name is not looked up on PaddleHub's server (which would be a download)
    import paddlehub.module.manager as mgr
    monkeypatch.setattr(mgr.LocalModuleManager, "install", lambda *a, **k: pytest.fail("tried to install"))
    line = _main_fails(["-m", "no-such-module", "-p", str(_free_port())], capsys)
    assert "'no-such-module' is not installed" in line and "never downloads" in line
    # a module that fails to load, in a real process
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"modules_info": {"chinese-electra-small": {
        "init_args": {"task": "seq-cls", "load_checkpoint": str(tmp_path / "nowhere")}, "predict_args": {}}}}))
    line = _start_fails(["-c", str(cfg), "-p", str(_free_port())], _env(electra_home))
    assert line.startswith("error: ") and "load_checkpoint" in line and "nowhere" in line and "does not exist" in line


# --- gunicorn -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workers(installed, electra_home, tmp_path_factory):
    """The embeddings module served by `--workers 2` with the small limits."""
    port = _free_port()
    log = tmp_path_factory.mktemp("workers") / "server.log"
    proc, url = start_server(["-m", "chinese-electra-small", "-p", str(port), "--workers", "2", "--threads", "2",
                              *LIMITS], _env(electra_home), str(log), port)
    yield {"url": url, "port": port, "proc": proc}
    stop_server(proc)


def test_workers_serve_the_same_app(workers, load):
    url, port = workers["url"], workers["port"]
    code, r = _call(f"{url}/predict/chinese-electra-small", {"data": [["今天是个好日子"]]})
    assert code == 200 and r["status"] == "000"
    np.testing.assert_allclose(r["results"][0][0], load().get_embedding([["今天是个好日子"]])[0][0], atol=1e-4)
    assert _call(f"{url}/health")[0] == 200
    code, r = _call(f"{url}/predict/chinese-electra-small", {"data": [["长" * 900]] * 16})
    assert code == 413 and _envelope(r)
    assert _call(f"{url}/predict/chinese-electra-small", {"data": [["a\ud800"]]})[0] == 400
    _malformed_bodies_are_400(port)
    with socket.create_connection(("127.0.0.1", port)) as s:  # a slow head: dropped after the read timeout
        assert _closed_after(s, _head("20")[:-4]) < READ_TIMEOUT + 1.5


def test_workers_a_chunked_body_over_the_limit_is_413_and_closed(workers):
    code, r, closed_after = _chunked_over_the_limit(workers["port"])
    assert code == 413 and r["status"] == "413" and f"limit of {MAX_BODY} bytes" in r["msg"], (code, r)
    assert closed_after < 3, closed_after


def test_workers_valid_requests_beside_idle_and_slow_connections(workers):
    _valid_requests_beside_held_connections(workers)


# --- property: any JSON body gets the envelope, 4xx or a result ---------------------------------------
from hypothesis import HealthCheck, event, given, settings, strategies as st  # noqa: E402

_chars = st.one_of(st.characters(), st.characters(categories=["Cs"]),  # lone surrogates too
                   st.sampled_from(list("\x00\u200b\ufffe\u3000 \t\n\002好。")))
_text = st.text(_chars, max_size=30)
# no subnormals: the library flushes them to zero in this process (hypothesis refuses to draw them then)
_floats = st.floats(allow_subnormal=False)
_json = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | _floats | _text,
                     lambda kids: st.lists(kids, max_size=5) | st.dictionaries(_text, kids, max_size=3), max_leaves=12)
_word = st.text(st.characters(categories=["L", "N", "P"]), min_size=1, max_size=30)  # mostly takeable
_examples = st.integers(1, 2).flatmap(lambda n: st.lists(  # one arity per request, as a task takes
    st.lists(st.one_of(_word, _word, _word, _text), min_size=n, max_size=n), min_size=1, max_size=6))


def _mostly(valid, n=4):
    return st.one_of(*[valid] * n, _json)


_body = st.one_of(
    st.fixed_dictionaries({"data": _mostly(_examples, 2)}, optional={
        "max_seq_len": _mostly(st.integers(3, 600)), "batch_size": _mostly(st.integers(1, 10)),
        "return_prob": _mostly(st.booleans()), "pooling": _mostly(st.sampled_from(["cls", "mean"])),
        "split_char": _mostly(_word), "use_gpu": _mostly(st.just(False))}),
    st.dictionaries(_text, _json, max_size=4),
    _json)


def _check_any_body(server, draw):
    key = draw(st.sampled_from(sorted(server["modules"])))
    body = draw(_body)
    code, r = _call(f"{server['url']}/predict/{key}", json.dumps(body).encode(), raw=True)  # a dropped connection raises
    assert _envelope(r), (code, r)
    event(f"HTTP {code}")
    assert (code == 200 and r["status"] == "000") or (400 <= code < 500 and r["status"] != "000"), (body, code, r)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_any_json_body_gets_the_envelope_with_4xx_or_a_result(server, data):
    _check_any_body(server, data.draw)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_any_json_body_gets_the_envelope_with_4xx_or_a_result_long(server, data):
    _check_any_body(server, data.draw)


# --- temporary folders: removed on SIGTERM, and those of killed servers at the next start ---------------
def test_stale_temporaries_of_dead_processes_are_removed(tmp_path, monkeypatch):
    import sys
    from paddle_electra import io
    monkeypatch.setenv("PADDLE_ELECTRA_HOME", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / io.TEMPORARY_DIR
    root.mkdir()
    host = io._host_tag()
    stale = root / f"hub-{host}-{dead.pid}-12345-abc_1"
    reused_pid = root / f"hub-{host}-{os.getpid()}-1-abc_2"  # this pid, but another process's start time
    other_host = root / f"hub-{'0' * 8 if host != '0' * 8 else '1' * 8}-{dead.pid}-12345-abc_3"
    not_ours = root / "notes"
    for d in (stale, reused_pid, other_host, not_ours):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x" * 10)
    mine = io.temporary_folder("hub")  # cleans first
    assert sorted(os.listdir(root)) == sorted([os.path.basename(mine), other_host.name, "notes"])
    assert io.remove_stale_temporaries() == []  # its own live folder is kept


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)], ids=["one-process", "gunicorn"])
def test_sigterm_leaves_no_temporary_folder(installed, electra_home, tmp_path, monkeypatch, workers):
    """issue 23 item 3: SIGTERM to the server left /tmp/paddle-electra-hub-* (~190 MB a task module: the
    weights written for the fast path and their exported graph), weakref.finalize never running."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copytree(os.path.join(electra_home, "chinese-electra-small"), home / "chinese-electra-small")
    monkeypatch.setenv("PADDLE_ELECTRA_HOME", str(home))
    module = hub.Module(name="chinese-electra-small", task="seq-cls", use_fast_path=False)
    paddle.save(module.state_dict(), str(tmp_path / "model.pdparams"))  # weights the fast path must write out
    temporaries = home / ".tmp"
    temporaries.mkdir()
    killed = temporaries / "hub-00000000-1-1-left"  # another machine's: kept
    killed.mkdir()
    port = _free_port()
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"modules_info": {"chinese-electra-small": {
        "init_args": {"task": "seq-cls", "load_checkpoint": str(tmp_path / "model.pdparams")},
        "predict_args": {}}}, "port": port}))
    proc, url = start_server(["-c", str(cfg), "--workers", str(workers), "--threads", "2"],
                             dict(_env(str(home)), PADDLE_ELECTRA_ENGINE="paddle"), str(tmp_path / "log"), port)
    try:
        for _ in range(2 * workers):  # each worker writes its own copy
            code, r = _call(f"{url}/predict/chinese-electra-small", {"data": [["今天是个好日子"]]})
            assert code == 200, r
        assert len(os.listdir(temporaries)) > 1, os.listdir(temporaries)
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # the server's own process only (gunicorn's master stops its workers)
        try:
            proc.wait(30)
        finally:
            stop_server(proc)
    assert proc.returncode == 0, open(tmp_path / "log").read()[-3000:]
    assert os.listdir(temporaries) == [killed.name], open(tmp_path / "log").read()[-3000:]


@pytest.mark.slow  # kept out of the default run's 10 minutes (make test-all runs it)
def test_a_module_failing_in_gunicorn_workers_is_one_line(installed, electra_home, tmp_path):
    """issue 23 item 8: each worker printed the error, then gunicorn its shut-down lines and (racing with the
    second worker's exit) HaltServer tracebacks; with a non-load exit code the workers were restarted forever."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"modules_info": {"chinese-electra-small": {
        "init_args": {"task": "seq-cls", "load_checkpoint": str(tmp_path / "nowhere")}, "predict_args": {}}}}))
    out = subprocess.run([PY, "-m", "paddle_electra.hub", "serving", "start", "-c", str(cfg), "-p", str(_free_port()),
                          "--workers", "2"], env=_env(electra_home), capture_output=True, text=True, timeout=120)
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower() and "UserWarning" not in line]
    assert out.returncode == 2 and "Traceback" not in out.stderr and "gunicorn" not in out.stderr, out.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "nowhere" in errors[0], out.stderr[-3000:]


def test_a_task_module_without_a_checkpoint_is_refused_unless_allowed(installed, electra_home, tmp_path, capsys,
                                                                   monkeypatch):
    """issue 23 item 8: it answered with a randomly initialised head, saying so only in a log warning."""
    from paddle_electra import serving
    monkeypatch.setenv("PADDLE_ELECTRA_HOME", electra_home)
    cfg = tmp_path / "cfg.json"
    info = {"chinese-electra-small": {"init_args": {"task": "seq-cls"}, "predict_args": {}}}
    cfg.write_text(json.dumps({"modules_info": info, "port": _free_port()}))
    line = _main_fails(["-c", str(cfg)], capsys)
    assert line.startswith("error: module 'chinese-electra-small': task 'seq-cls' has no trained head") and \
        "--allow-untrained-heads" in line and "load_checkpoint" in line, line
    loaded = serving.load_modules(info, allow_untrained_heads=True)  # the explicit opt-in
    assert loaded["chinese-electra-small"]["module"].task == "seq-cls"
    assert serving.load_modules({"chinese-electra-small": {"init_args": {}, "predict_args": {}}})  # embeddings: fine
