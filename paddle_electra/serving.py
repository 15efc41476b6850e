"""The HTTP server of the hub modules: `python -m paddle_electra.hub serving start -c config.json | -m NAME`.

It is `hub serving start ...` bound to 127.0.0.1 (PaddleHub binds every interface), threaded, with the
requests that wait together merged into shared model calls (RequestBatcher), and malformed HTTP requests
answered in PaddleHub's envelope.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
from concurrent.futures import Future
from typing import List, Optional


class RequestBatcher:
    """Runs the requests of a threaded server through one worker thread, merging those that are waiting
    (and ask for the same settings) into one call, with the largest batch_size among them. A request that
    arrives alone runs at once; under load, model calls see many texts, each padded to its batch's
    longest. Results are split back per request; an error goes to every request of its call."""

    def __init__(self, fn, max_texts: int):
        self._fn, self._max_texts = fn, max_texts
        self._queue = queue.Queue()
        threading.Thread(target=self._loop, name="electra-request-batcher", daemon=True).start()

    def __call__(self, data, batch_size, kwargs):
        done = Future()
        self._queue.put((data, batch_size, kwargs, done))
        return done.result()

    def _loop(self):
        held = []  # waiting requests with other settings: they go in a later call
        while True:
            first = held.pop(0) if held else self._queue.get()
            group, n, rest = [first], len(first[0]), []
            for item in held:
                if item[2] == first[2] and n + len(item[0]) <= self._max_texts:
                    group.append(item)
                    n += len(item[0])
                else:
                    rest.append(item)
            held = rest
            while n < self._max_texts:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item[2] == first[2] and n + len(item[0]) <= self._max_texts:
                    group.append(item)
                    n += len(item[0])
                else:
                    held.append(item)
            self._run(group)

    def _run(self, group):
        data = [ex for item in group for ex in item[0]]
        try:
            out = self._fn(data, batch_size=max(item[1] for item in group), **group[0][2])
        except Exception as e:  # noqa: BLE001 - handed to the requests, which answer it in the envelope
            for item in group:
                item[3].set_exception(e)
            return
        k = 0
        for item in group:
            n = len(item[0])
            if isinstance(out, tuple):  # (labels, probabilities)
                item[3].set_result(tuple(part[k:k + n] for part in out))
            else:
                item[3].set_result(out[k:k + n])
            k += n


# --- `hub serving start`, bound to loopback --------------------------------------------------------
def _serve_loopback(host: str):
    """PaddleHub's single-process app (its routes, envelope and predict_v2), on `host`, answering
    malformed requests (not JSON, not an object, unknown routes) in the envelope instead of HTML."""
    from flask import request
    from paddlehub.serving import app_compat
    from paddlehub.serving.model_service.base_model_service import v2_module_info
    from werkzeug.exceptions import HTTPException

    def run(configs=None, port=8866):
        if configs is None:
            raise RuntimeError("no modules to serve")
        app_compat.config_with_file(configs)
        app = app_compat.create_app(init_flag=True)
        batchers, lock = {}, threading.Lock()

        @app.before_request
        def require_json_object():
            if request.method == "POST" and request.path.startswith("/predict/"):
                body = request.get_json(force=True, silent=True)
                if not isinstance(body, dict):
                    return app_compat.package_result(
                        "112", 'the request body must be a JSON object such as {"data": [["text"]]}', ""), 400

        def predict(module_name: str):
            """PaddleHub's predict route; the hub modules' requests go through one RequestBatcher each."""
            if module_name not in v2_module_info.modules:
                return app_compat.package_result("111", f"Module {module_name} is not available.", "")
            info = v2_module_info.get_module_info(module_name)
            module, body = info["module"], request.get_json(force=True, silent=True)
            if not hasattr(module, "check_request"):  # another PaddleHub module
                return app_compat.predict_v2(info, body)
            try:
                data, batch_size, kwargs = module.check_request(**{**info["predict_args"], **body})
                with lock:  # one batcher per module: the model sees one thread only
                    if module_name not in batchers:
                        batchers[module_name] = RequestBatcher(module.run_request, module.max_serving_texts)
                out = batchers[module_name](data, batch_size, kwargs)
            except Exception as err:  # noqa: BLE001 - answered in the envelope, as PaddleHub's predict_v2
                return app_compat.package_result("101", str(err), "")
            return app_compat.package_result("000", "", out)

        app.view_functions["predict_serving_v2"] = predict

        @app.errorhandler(Exception)
        def envelope(err):
            code = err.code if isinstance(err, HTTPException) else 500
            return app_compat.package_result("101" if code == 500 else str(code), str(err), ""), code

        print(f"serving {', '.join(configs)} on http://{host}:{port}", flush=True)
        # threaded: requests are read and answered in parallel, and RequestBatcher hands the model
        # the ones that wait together (PaddleHub's server takes one request at a time)
        app.run(host=host, port=int(port), debug=False, threaded=True)

    app_compat.run = run


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m paddle_electra.hub [--host 127.0.0.1] serving start -c config.json | -m NAME [-p PORT]`:
    PaddleHub's `hub` command, serving on loopback by default."""
    argv = list(sys.argv[1:] if argv is None else argv)
    host = "127.0.0.1"
    if "--host" in argv:
        i = argv.index("--host")
        host = argv[i + 1]
        del argv[i:i + 2]
    if argv[:2] != ["serving", "start"]:
        print("usage: python -m paddle_electra.hub [--host 127.0.0.1] serving start (-c config.json | -m NAME) "
              "[-p PORT]\n`hub serving start` served on loopback, malformed requests answered in the envelope",
              file=sys.stderr)
        return 2
    cfg = argv[argv.index("-c") + 1] if "-c" in argv else argv[argv.index("--config") + 1] if "--config" in argv else None
    if cfg and os.path.exists(cfg):
        with open(cfg, encoding="utf-8") as f:
            c = json.load(f)
        if c.get("use_gpu") or c.get("use_multiprocess"):
            print("use_gpu / use_multiprocess start PaddleHub's multi-process servers, which bind every "
                  "interface; use `hub serving start` for those", file=sys.stderr)
            return 2
    if "--use_gpu" in argv or "--use_multiprocess" in argv:
        print("--use_gpu / --use_multiprocess: use `hub serving start`", file=sys.stderr)
        return 2
    _serve_loopback(host)
    from paddlehub.commands.utils import execute
    sys.argv = ["hub"] + argv
    return execute()
