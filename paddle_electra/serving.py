"""The HTTP server of the hub modules: `python -m paddle_electra.hub serving start -c config.json | -m NAME`.

`hub serving start`'s arguments, config files, routes (`POST /predict/<name>`, `/`) and envelope
(`{"msg", "results", "status"}`), served by an app of our own rather than PaddleHub's launcher, so that:

- it binds 127.0.0.1 unless `--host` says otherwise (PaddleHub binds every interface);
- every request is bounded: body size, examples per request, characters per string, the time to
  receive a request (idle and slowloris connections are dropped), open connections;
- every client error gets the envelope with a 4xx code (PaddleHub answers them HTTP 200, status
  "101"), our faults 5xx; a request is checked before it is merged with others, and a failure in a
  merged model call is retried per request, so one bad request never fails another;
- one process, threaded: the requests that wait together share model calls (RequestBatcher); or
  `--workers N`: gunicorn's threaded workers behind the same app, each with its own model copy;
- `GET /health` for load balancers; modules are never downloaded (an unknown name is an error).

Entry points: `add_arguments(parser)` / `run(args)` (the CLI), `main(argv)` (`python -m paddle_electra.hub`).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, fields
from typing import Dict, List, Optional

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8866  # PaddleHub's


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (each a command-line option)."""

    max_body_bytes: int = 4 * 1024 * 1024   # a request body (HTTP 413 beyond)
    max_texts: int = 256                     # items of any list in a request: examples per request
    max_text_chars: int = 10000              # characters of any string in a request
    read_timeout: float = 10.0               # seconds to receive one request, head and body, or to wait for it
    max_connections: int = 256               # open connections (per process); more are answered 503


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


# --- request checks ---------------------------------------------------------------------------------
def check_body(body, limits: Limits) -> None:
    """What the server takes of any module's request: a JSON object whose lists hold at most
    `max_texts` items and whose strings at most `max_text_chars` characters, all valid Unicode (a
    lone surrogate such as "\\ud800" is JSON but no text: the tokenizer cannot take it). Errors name
    the field, e.g. data[3][0]."""
    if not isinstance(body, dict):
        raise RequestError('the request body must be a JSON object such as {"data": [["text"]]}', status="112")
    stack = [(body, "the request")]
    while stack:  # iterative: nesting is bounded by the JSON parser, not by our stack
        value, where = stack.pop()
        if isinstance(value, dict):
            for k in value:
                _check_text(k, f"a field name of {where}", limits)
            stack.extend((v, k if value is body else f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, str):
            _check_text(value, where, limits)
        elif isinstance(value, list):
            if len(value) > limits.max_texts:
                raise RequestError(f"{where} has {len(value)} items; at most {limits.max_texts} per request")
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def _check_text(value: str, where: str, limits: Limits) -> None:
    if len(value) > limits.max_text_chars:
        raise RequestError(f"{where} has {len(value)} characters; at most {limits.max_text_chars} per string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RequestError(f"{where} is not valid Unicode: {_printable(value[e.start])} at character {e.start} "
                           f"(a lone surrogate)") from None


def _printable(text: str) -> str:
    """`text` for a message: lone surrogates escaped (they cannot be encoded in the response)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_body(raw: bytes, limits: Limits):
    try:
        body = json.loads(raw)
    except RecursionError:
        raise RequestError("the request body is nested too deeply", status="112") from None
    except ValueError as e:  # not JSON, not UTF-8, an integer of more than 4300 digits
        raise RequestError(f"the request body is not JSON ({str(e)[:200]}): send a JSON object such as "
                           '{"data": [["text"]]}', status="112") from None
    check_body(body, limits)
    return body


# --- request batching -------------------------------------------------------------------------------
class RequestBatcher:
    """Runs the requests of a threaded server through one worker thread, merging those that are waiting
    (and ask for the same settings) into one call, with the largest batch_size among them. A request that
    arrives alone runs at once; under load, model calls see many texts, each padded to its batch's
    longest. Results are split back per request. When a merged call fails, each of its requests is run
    again alone, so that an error reaches only the request that causes it."""

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
        except Exception as e:  # noqa: BLE001 - handed to the request, which answers it in the envelope
            if len(group) == 1:
                group[0][3].set_exception(e)
            else:  # which request failed it? each alone
                for item in group:
                    self._run([item])
            return
        k = 0
        for item in group:
            n = len(item[0])
            if isinstance(out, tuple):  # (labels, probabilities)
                item[3].set_result(tuple(part[k:k + n] for part in out))
            else:
                item[3].set_result(out[k:k + n])
            k += n


# --- the read deadline ------------------------------------------------------------------------------
class _ReadDeadline:
    """Per request, a timer that shuts the connection's socket (which ends a blocked read) unless the app
    has the whole request by then: idle and slowloris connections cannot hold a thread. The server arms
    it when it starts waiting for a request; the app disarms it once it has read the body. Thread-local:
    both servers run the app in the thread that read the request."""

    _local = threading.local()

    @classmethod
    def arm(cls, sock: socket.socket, seconds: float):
        cls.disarm()
        timer = threading.Timer(seconds, cls._drop, (sock,))
        timer.daemon = True
        timer.start()
        cls._local.timer = timer

    @classmethod
    def disarm(cls):
        timer = getattr(cls._local, "timer", None)
        if timer is not None:
            timer.cancel()
            cls._local.timer = None

    @staticmethod
    def _drop(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


# --- the app ----------------------------------------------------------------------------------------
def create_app(modules: Dict[str, dict], limits: Limits = Limits()):
    """A Flask app with PaddleHub's routes and envelope over loaded modules: {name: {"module": m,
    "predict_args": {...}}} (predict_args: defaults of every request, as in PaddleHub's configs)."""
    from flask import Flask, request
    from werkzeug.exceptions import BadRequest, HTTPException

    body_errors = (OSError, ValueError)  # werkzeug's reader of chunked bodies raises these
    try:
        from gunicorn.http.errors import ParseException  # gunicorn's (InvalidChunkSize, ChunkMissingTerminator)
        body_errors += (ParseException,)
    except ImportError:
        pass

    app = Flask("paddle_electra.serving")
    app.json.ensure_ascii = False
    app.config["MAX_CONTENT_LENGTH"] = limits.max_body_bytes
    batchers, lock = {}, threading.Lock()
    has_gpu = _has_gpu()

    def answer(status, msg, results="", http=200):
        return envelope(status, _printable(msg[:2000]), results), http

    @app.before_request
    def read_whole_request():
        try:
            # at most max_body_bytes (413 beyond), within the read deadline
            data = request.get_data(cache=True)
        except HTTPException:
            raise
        except body_errors as e:  # a malformed chunk size or chunk: the client's fault
            raise BadRequest(f"the request body is malformed: {e}") from None
        finally:
            _ReadDeadline.disarm()
        if request.content_length is not None and len(data) < request.content_length:
            # gunicorn hands over what came before the client closed its side: no whole request
            raise BadRequest(f"the request body ended after {len(data)} of the {request.content_length} bytes "
                             f"its Content-Length announced")

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
            body = parse_body(request.get_data(cache=True), limits)
            given = {**entry["predict_args"], **body}
            if not hasattr(module, "check_request"):  # another PaddleHub module: its serving method
                return answer("000", "", getattr(module, module.serving_func_name)(**given))
            try:
                data, batch_size, kwargs = module.check_request(**given)
            except (TypeError, ValueError) as e:
                raise RequestError(str(e)) from None
            if kwargs.get("use_gpu") and not has_gpu:
                raise RequestError("use_gpu is true but this server has no GPU")
            with lock:  # one batcher per module: its model sees one thread only
                if name not in batchers:
                    batchers[name] = RequestBatcher(module.run_request, module.max_serving_texts)
            try:
                results = batchers[name](data, batch_size, kwargs)
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


# --- the servers ------------------------------------------------------------------------------------
_BUSY = json.dumps(envelope("503", "the server has no free connection; retry later")).encode()
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY))


def make_server(app, host: str, port: int, limits: Limits):
    """The single-process threaded server: werkzeug's, with at most `max_connections` open connections
    (more are answered 503) and the read deadline."""
    from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def handle_one_request(self):
            _ReadDeadline.arm(self.connection, limits.read_timeout)
            try:
                super().handle_one_request()
            finally:
                _ReadDeadline.disarm()

        def log_request(self, code="-", size="-"):  # errors are logged; requests are not
            pass

    class Server(ThreadedWSGIServer):
        slots = threading.BoundedSemaphore(limits.max_connections)

        def process_request(self, request, client_address):
            if not self.slots.acquire(blocking=False):
                try:
                    request.settimeout(1)
                    request.sendall(_BUSY_RESPONSE)
                    request.shutdown(socket.SHUT_WR)
                    request.settimeout(0.05)  # what the client sent, so that closing does not reset
                    request.recv(1 << 16)
                except OSError:
                    pass
                self.shutdown_request(request)
                return
            super().process_request(request, client_address)

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    return Server(host, port, app, handler=Handler)


def _gunicorn(load_app, host: str, port: int, workers: int, threads: int, limits: Limits):
    """`--workers N`: gunicorn's gthread workers, each loading the modules itself (after the fork) and
    serving the same app; connections per worker and the read deadline as the single-process server.
    A module that fails to load in a worker ends the server with that one line (ServeError): the worker
    hands it to the master in a file and exits with gunicorn's app-load-error code, and gunicorn's own
    log is kept to warnings and, once a worker has failed so, to nothing (it printed the error once per
    worker, then its shut-down lines and, racing with the second worker's exit, HaltServer tracebacks)."""
    import tempfile
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.errors import HaltServer
    from gunicorn.glogging import Logger
    from gunicorn.workers.gthread import ThreadWorker

    fd, failures = tempfile.mkstemp(prefix="paddle-electra-serve-", suffix=".err")
    os.close(fd)

    def failure() -> str:
        try:
            with open(failures, encoding="utf-8") as f:
                return f.readline().strip()
        except OSError:
            return ""

    class Log(Logger):  # gunicorn's logger_class setting
        def error(self, msg, *args, **kwargs):
            if not failure():  # the worker's error is the one line said
                super().error(msg, *args, **kwargs)

        critical = exception = error

    class Worker(ThreadWorker):
        def handle(self, conn):
            _ReadDeadline.arm(conn.sock, limits.read_timeout)
            try:
                return super().handle(conn)
            finally:
                _ReadDeadline.disarm()

    class App(BaseApplication):
        def load_config(self):
            for k, v in {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
                         "worker_class": Worker, "worker_connections": limits.max_connections,
                         "keepalive": max(1, math.ceil(limits.read_timeout)), "timeout": 300, "graceful_timeout": 10,
                         "limit_request_line": 8190, "limit_request_fields": 100,
                         "limit_request_field_size": 8190, "accesslog": None, "loglevel": "warning",
                         "logger_class": Log, "control_socket_disable": True}.items():
                self.cfg.set(k, v)

        def load(self):
            try:
                return load_app()
            except ServeError as e:
                with open(failures, "a", encoding="utf-8") as f:  # one short append: whole lines
                    f.write(" ".join(str(e).split()) + "\n")
                sys.exit(Arbiter.APP_LOAD_ERROR)  # the master then stops the others and exits

    master = os.getpid()
    try:
        App().run()
    except (HaltServer, SystemExit) as e:
        if os.getpid() != master:  # a worker unwinding the stack it was forked with: its own exit
            raise
        if failure():
            raise ServeError(failure()) from None
        if isinstance(e, HaltServer):
            raise ServeError(f"gunicorn stopped: {e.reason}") from None
        raise
    finally:
        if os.getpid() == master:
            os.remove(failures)


# --- modules ----------------------------------------------------------------------------------------
def load_modules(modules_info: Dict[str, dict], allow_untrained_heads: bool = False) -> Dict[str, dict]:
    """PaddleHub's `hub serving` start-up (`hub.Module(**init_args)` per config entry, `name` the key
    unless a `directory` is given), offline: a name that is not installed is an error, not a download.
    A task module whose head was not in the weights it loaded (no load_checkpoint) would answer with a
    random head: refused unless `allow_untrained_heads` (--allow-untrained-heads)."""
    import paddlehub as hub
    from paddlehub.module.manager import LocalModuleManager

    loaded = {}
    for key, entry in modules_info.items():
        init_args = dict(entry.get("init_args") or {})
        if "directory" in init_args:
            if not os.path.isdir(init_args["directory"]):
                raise ServeError(f"module {key!r}: directory {init_args['directory']!r} does not exist")
        else:
            name, version = init_args.setdefault("name", key), init_args.get("version")
            found = LocalModuleManager().search(name)
            if found is None:
                raise ServeError(f"module {name!r} is not installed (this server never downloads modules): "
                                 f"`hub install <module dir>` it, or give its directory in the config's init_args")
            if version and not found.version.match(version):
                raise ServeError(f"module {name!r}: version {version} asked, {found.version} installed")
        try:
            module = hub.Module(**init_args)
        except Exception as e:  # noqa: BLE001 - the constructor's error, one line
            raise ServeError(f"module {key!r}: {type(e).__name__}: {e}") from None
        if getattr(module, "serving_func_name", None) is None:
            raise ServeError(f"module {key!r} has no serving method")
        report = getattr(getattr(module, "model", None), "load_report", None)
        untrained = list(getattr(report, "newly_initialized", None) or [])
        if untrained and getattr(module, "task", None) and not allow_untrained_heads:
            raise ServeError(f"module {key!r}: task {module.task!r} has no trained head (its weights, e.g. "
                             f"{untrained[0]}, are not in {report.path}) and would answer at random: give "
                             f"init_args.load_checkpoint (a fine-tuned model), or pass --allow-untrained-heads")
        loaded[key] = {"module": module, "predict_args": dict(entry.get("predict_args") or {})}
    return loaded


def read_config(path: str) -> dict:
    """A `hub serving start -c` config: {"modules_info": {name: {"init_args", "predict_args"}}, "port",
    "use_multiprocess", "workers"}."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise ServeError(f"config file {path!r} does not exist") from None
    except OSError as e:
        raise ServeError(f"config file {path!r}: {e.strerror}") from None
    except ValueError as e:
        raise ServeError(f"config file {path!r} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("modules_info"), dict) or not cfg["modules_info"]:
        raise ServeError(f'config file {path!r}: expected {{"modules_info": {{"<module>": {{"init_args": '
                         f'{{...}}, "predict_args": {{...}}}}}}, "port": 8866}}')
    for key, entry in cfg["modules_info"].items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k, {}), dict)
                                                  for k in ("init_args", "predict_args")):
            raise ServeError(f"config file {path!r}: modules_info[{key!r}] must be an object with "
                             f"init_args and predict_args objects")
    if cfg.get("use_gpu"):
        raise ServeError(f"config file {path!r}: use_gpu starts PaddleHub's zmq GPU server, which this server "
                         f"does not run; use `hub serving start` for it")
    return cfg


# --- the command ------------------------------------------------------------------------------------
def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", help="a `hub serving` config file (modules_info, port, workers)")
    src.add_argument("-m", "--modules", nargs="+", metavar="NAME[==VERSION]",
                     help="installed modules to serve with their defaults (embeddings for these modules)")
    p.add_argument("-p", "--port", type=_positive(int), default=None,
                   help=f"port (default: the config's, else {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("-w", "--workers", type=_positive(int), default=None,
                   help="gunicorn worker processes, each with its own copy of the models (default: one "
                        "process, threaded, requests batched together; a config's use_multiprocess: its workers)")
    p.add_argument("--threads", type=_positive(int), default=4, help="threads per gunicorn worker (default 4)")
    from .inference import ENGINES
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="inference engine of the modules' fast path, for every module served (default: a "
                        "config's init_args engine, else auto: paddle_electra.inference.choose_engine)")
    d = Limits()
    p.add_argument("--max-body-bytes", type=_positive(int), default=d.max_body_bytes,
                   help=f"largest request body (default {d.max_body_bytes})")
    p.add_argument("--max-texts", type=_positive(int), default=d.max_texts,
                   help=f"most examples per request (default {d.max_texts}; a module's max_serving_texts too)")
    p.add_argument("--max-text-chars", type=_positive(int), default=d.max_text_chars,
                   help=f"most characters per text (default {d.max_text_chars}; a module's max_serving_chars too)")
    p.add_argument("--read-timeout", type=_positive(float), default=d.read_timeout,
                   help=f"seconds to receive a request, head and body (default {d.read_timeout:g})")
    p.add_argument("--max-connections", type=_positive(int), default=d.max_connections,
                   help=f"open connections per process; more are answered 503 (default {d.max_connections})")
    p.add_argument("--allow-untrained-heads", action="store_true",
                   help="serve task modules without load_checkpoint (their heads randomly initialised: answers "
                        "at random; for trying the server out)")
    for flag in ("--use_gpu", "--use_multiprocess"):  # PaddleHub's flags, refused with a reason in run
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)


def _interrupt_on_sigterm(signum, frame):
    # SIGTERM (kill, service managers) ends the server as Ctrl-C does, so that atexit hooks and finalizers
    # run (the modules' temporary folders are removed); by default SIGTERM ends the process on the spot and
    # leaves them behind
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from .io import remove_stale_temporaries
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm) if main_thread else None  # gunicorn sets its own
    try:
        for path in remove_stale_temporaries():  # left by servers that were killed (SIGKILL)
            logger.info("removed %s, left by a process that is gone", path)
        return _run(args)
    except ServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    if args.use_gpu:
        raise ServeError("--use_gpu starts PaddleHub's zmq GPU server, which this server does not run; "
                         "use `hub serving start` for it")
    limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
    workers = args.workers
    if args.config:
        cfg = read_config(args.config)
        modules_info, port = cfg["modules_info"], args.port or cfg.get("port", DEFAULT_PORT)
        if workers is None and cfg.get("use_multiprocess"):
            workers = int(cfg.get("workers") or os.cpu_count() or 1)
    else:
        modules_info, port = {}, args.port or DEFAULT_PORT
        for item in args.modules:
            name, _, version = item.partition("==")
            modules_info[name] = {"init_args": {"version": version} if version else {}, "predict_args": {}}
    if args.engine:  # the modules' own argument, ElectraHubModule(engine=...)
        for entry in modules_info.values():
            entry["init_args"] = {**(entry.get("init_args") or {}), "engine": args.engine}
    if args.use_multiprocess and workers is None:
        workers = os.cpu_count() or 1
    if isinstance(port, str) and port.strip().isdigit():  # PaddleHub's configs may give it as a string
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ServeError(f"port must be an integer in [1, 65535], got {port!r}")

    def load_app():
        return create_app(load_modules(modules_info, args.allow_untrained_heads), limits)

    where = f"http://{args.host}:{port}"
    if workers and workers > 1:
        print(f"serving {', '.join(modules_info)} on {where} with {workers} gunicorn workers", flush=True)
        _gunicorn(load_app, args.host, port, workers, args.threads, limits)
        return 0
    app = load_app()
    try:
        server = make_server(app, args.host, port, limits)
    except OSError as e:
        raise ServeError(f"cannot listen on {args.host}:{port}: {e.strerror}") from None
    print(f"serving {', '.join(modules_info)} on {where}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m paddle_electra.hub serving start (-c config.json | -m NAME) [-p PORT] [--host ...]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m paddle_electra.hub serving start",
                                description="`hub serving start` on 127.0.0.1, with request limits")
    add_arguments(p)
    if "--host" in argv[:1]:  # the old spelling: --host before `serving start`
        argv = argv[2:] + argv[:2]
    if argv[:2] != ["serving", "start"]:
        p.print_usage(sys.stderr)
        print("expected: serving start ...", file=sys.stderr)
        return 2
    return run(p.parse_args(argv[2:]))
