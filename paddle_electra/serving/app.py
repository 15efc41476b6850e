"""What the server does with a request: PaddleHub's envelope, the request limits, the check of a request
(a module of ours validates its own fields once: ServedModule.validate_request; any other PaddleHub module
gets the generic check of its body), the batcher that merges waiting requests, and the Flask app."""
from __future__ import annotations

import json
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (each a command-line option)."""

    max_body_bytes: int = 4 * 1024 * 1024   # a request body (HTTP 413 beyond)
    max_texts: int = 256                     # items of any list in a request: examples per request
    max_text_chars: int = 10000              # characters of any string in a request
    read_timeout: float = 10.0               # seconds to receive one request, head and body, or to wait for it
    max_connections: int = 512               # open connections (per process); more are answered 503


class RequestError(ValueError):
    """A request the server does not take: answered 4xx in the envelope."""

    def __init__(self, msg: str, http: int = 400, status: str = "101"):
        super().__init__(msg)
        self.http, self.status = http, status


class ServeError(Exception):
    """A start-up error (bad config, unknown module): one line, non-zero exit."""


def envelope(status: str, msg: str, results=""):
    """PaddleHub's response body."""
    return {"status": status, "msg": msg, "results": results}


# --- requests -----------------------------------------------------------------------------------------
class ServingRequest(NamedTuple):
    """A request its module has checked: what run_request takes."""
    data: List[List[str]]     # the examples
    batch_size: int
    settings: Dict[str, Any]  # run_request's other arguments (requests with equal settings share a model call)


class ServedModule:
    """A module whose requests the server checks once (validate_request) and batches (run_request),
    paddle_electra.hub.ElectraHubModule; the server runs any other PaddleHub module through its own serving
    method, after the generic check of the body (check_body)."""

    max_serving_texts: int  # examples per request; the most a batched model call merges

    def validate_request(self, fields: Dict[str, Any], max_texts: Optional[int] = None,
                         max_text_chars: Optional[int] = None) -> ServingRequest:
        """The request's fields checked (within the module's limits and these, the server's) ->
        ServingRequest; TypeError / ValueError naming the field."""
        raise NotImplementedError

    def run_request(self, data, batch_size: int, **keywords):
        """The results of a checked request (or of several merged: their data joined): the ServingRequest's
        data, batch_size and settings (as keywords)."""
        raise NotImplementedError


def check_body(body: dict, limits: Limits) -> None:
    """The generic check of another module's request: every list holds at most `max_texts` items and
    every string (field names too) is a text of at most `max_text_chars` characters (tasks.check_text:
    valid Unicode). Errors name the field, e.g. data[3][0]."""
    from ..tasks import check_text
    stack = [(body, "the request")]
    try:
        while stack:  # iterative: nesting is bounded by the JSON parser, not by our stack
            value, where = stack.pop()
            if isinstance(value, dict):
                for k in value:
                    check_text(k, f"a field name of {where}", limits.max_text_chars)
                stack.extend((v, k if value is body else f"{where}.{k}") for k, v in value.items())
            elif isinstance(value, str):
                check_text(value, where, limits.max_text_chars)
            elif isinstance(value, list):
                if len(value) > limits.max_texts:
                    raise ValueError(f"{where} has {len(value)} items; at most {limits.max_texts} per request")
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
    except ValueError as e:
        raise RequestError(str(e)) from None


def _printable(text: str) -> str:
    """`text` for a message: lone surrogates escaped (they cannot be encoded in the response)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_body(raw: bytes) -> dict:
    """The request body: a JSON object, or RequestError."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise RequestError("the request body is nested too deeply", status="112") from None
    except ValueError as e:  # not JSON, not UTF-8, an integer of more than 4300 digits
        raise RequestError(f"the request body is not JSON ({str(e)[:200]}): send a JSON object such as "
                           '{"data": [["text"]]}', status="112") from None
    if not isinstance(body, dict):
        raise RequestError('the request body must be a JSON object such as {"data": [["text"]]}', status="112")
    return body


# --- request batching -------------------------------------------------------------------------------
class Waiting(NamedTuple):
    """A request in the batcher's queue."""
    data: list
    batch_size: int
    settings: Dict[str, Any]  # requests with equal settings may share a call
    done: Future              # its results (or the error of its call)


class RequestBatcher:
    """Runs the requests of a threaded server through one worker thread, merging those that are waiting
    (and ask for the same settings) into one call, with the largest batch_size among them. A request that
    arrives alone runs at once; under load, model calls see many texts, each padded to its batch's
    longest. Results are split back per request. When a merged call fails, each of its requests is run
    again alone, so that an error reaches only the request that causes it."""

    def __init__(self, fn, max_texts: int):
        self._fn, self._max_texts = fn, max_texts
        self._queue: "queue.Queue[Waiting]" = queue.Queue()
        threading.Thread(target=self._loop, name="electra-request-batcher", daemon=True).start()

    def __call__(self, data, batch_size: int, settings: Dict[str, Any]):
        """The results of one request (`fn(data, batch_size=..., **settings)`'s, its share of a merged call)."""
        done = Future()
        self._queue.put(Waiting(data, batch_size, settings, done))
        return done.result()

    def _loop(self):
        held: List[Waiting] = []  # waiting requests with other settings: they go in a later call
        while True:
            first = held.pop(0) if held else self._queue.get()
            group, n, rest = [first], len(first.data), []
            for item in held:
                if item.settings == first.settings and n + len(item.data) <= self._max_texts:
                    group.append(item)
                    n += len(item.data)
                else:
                    rest.append(item)
            held = rest
            while n < self._max_texts:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item.settings == first.settings and n + len(item.data) <= self._max_texts:
                    group.append(item)
                    n += len(item.data)
                else:
                    held.append(item)
            self._run(group)

    def _run(self, group: List[Waiting]):
        data = [ex for item in group for ex in item.data]
        try:
            out = self._fn(data, batch_size=max(item.batch_size for item in group), **group[0].settings)
        except Exception as e:  # noqa: BLE001 - handed to the request, which answers it in the envelope
            if len(group) == 1:
                group[0].done.set_exception(e)
            else:  # which request failed it? each alone
                for item in group:
                    self._run([item])
            return
        k = 0
        for item in group:
            n = len(item.data)
            if isinstance(out, tuple):  # (labels, probabilities)
                item.done.set_result(tuple(part[k:k + n] for part in out))
            else:
                item.done.set_result(out[k:k + n])
            k += n


# --- the app ----------------------------------------------------------------------------------------
def create_app(modules: Dict[str, dict], limits: Limits = Limits()):
    """A Flask app with PaddleHub's routes and envelope over loaded modules: {name: {"module": m,
    "predict_args": {...}}} (predict_args: defaults of every request, as in PaddleHub's configs). It
    gets whole requests, their bodies within max_body_bytes: the server (HTTPServer) sees to that."""
    from flask import Flask, request
    from werkzeug.exceptions import HTTPException

    app = Flask("paddle_electra.serving")
    app.json.ensure_ascii = False
    batchers, lock = {}, threading.Lock()
    has_gpu = _has_gpu()

    def answer(status, msg, results="", http=200):
        return envelope(status, _printable(msg[:2000]), results), http

    @app.route("/", methods=["GET", "POST"])
    def index():
        return ("paddle_electra hub serving: POST /predict/<module> with a JSON body such as "
                '{"data": [["text"]]}; GET /health')

    @app.get("/health")
    def health():
        return answer("000", "", {"modules": sorted(modules)})

    @app.post("/predict/<name>")
    def predict(name: str):
        if name not in modules:
            return answer("111", f"Module {name} is not available; served: {', '.join(sorted(modules))}", http=404)
        entry = modules[name]
        module = entry["module"]
        try:
            body = parse_body(request.get_data(cache=True))
            given = {**entry["predict_args"], **body}
            if not isinstance(module, ServedModule):  # another PaddleHub module: its serving method
                check_body(body, limits)
                return answer("000", "", getattr(module, module.serving_func_name)(**given))
            try:  # the one check of the request: the module's, within the server's limits
                checked = module.validate_request(given, limits.max_texts, limits.max_text_chars)
            except (TypeError, ValueError) as e:
                raise RequestError(str(e)) from None
            if checked.settings.get("use_gpu") and not has_gpu:
                raise RequestError("use_gpu is true but this server has no GPU")
            with lock:  # one batcher per module: its model sees one thread only
                if name not in batchers:
                    batchers[name] = RequestBatcher(module.run_request, module.max_serving_texts)
            try:
                results = batchers[name](checked.data, checked.batch_size, checked.settings)
            except ValueError as e:  # the module's word for an input it cannot take (checked alone)
                raise RequestError(str(e)) from None
        except RequestError as e:
            return answer(e.status, str(e), http=e.http)
        return answer("000", "", results)

    @app.errorhandler(Exception)
    def any_error(err):
        if isinstance(err, HTTPException):  # 404 route, 405 method, 413 body, 400 bad request
            return answer(str(err.code), err.description or str(err), http=err.code)
        logger.exception("request failed")
        return answer("101", f"{type(err).__name__}: {err}", http=500)

    return app


def _has_gpu() -> bool:
    import paddle
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0

