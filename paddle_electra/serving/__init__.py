"""The HTTP server of the hub modules: `python -m paddle_electra.hub serving start -c config.json | -m NAME`.

`hub serving start`'s arguments, config files, routes (`POST /predict/<name>`, `/`) and envelope
(`{"msg", "results", "status"}`), served by an app of our own rather than PaddleHub's launcher, so that:

- it binds 127.0.0.1 unless `--host` says otherwise (PaddleHub binds every interface);
- every request is bounded: body size, examples per request, characters per string, the time to
  receive a request (idle and slowloris connections are dropped), open connections;
- every client error gets the envelope with a 4xx code (PaddleHub answers them HTTP 200, status
  "101"), our faults 5xx; a request is checked before it is merged with others, and a failure in a
  merged model call is retried per request, so one bad request never fails another;
- one process: waitress (HTTPServer) receives every connection in one event loop and hands whole
  requests to request threads, where those that wait together share model calls (RequestBatcher); or
  `--workers N`: gunicorn's master over N processes each serving so, each with its own model copy;
- `GET /health` for load balancers; modules are never downloaded (an unknown name is an error).

Entry points: `add_arguments(parser)` / `run(args)` (the CLI), `main(argv)` (`python -m paddle_electra.hub`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
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


# --- the server -------------------------------------------------------------------------------------
_BUSY = json.dumps(envelope("503", "the server has no free connection; retry later")).encode()
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY))
_LINGER = 2.0  # seconds a connection closed after an answer still reads what its client sends (RFC 9112 9.6)
_BUSY_SLOTS = 32  # connections beyond max_connections being answered 503 at once; more wait to be accepted
_OTHER_FILES = 128  # open files of a server process besides its connections (libraries, model files, pipes)


class HTTPServer:
    """The server of both modes (the one process, or each gunicorn worker): waitress, whose one event-loop
    thread receives every connection's requests and hands only whole ones (head and body) to `threads`
    request threads, so that idle and slow clients hold no thread. On top of waitress's own limits:

    - a request not received whole within `read_timeout` of its first byte, and a connection that sends
      no request for `read_timeout` (waitress's channel_timeout), are closed;
    - a body over `max_body_bytes` (announced by Content-Length or sent chunked) is answered 413, a request
      waitress cannot parse 400 (a malformed chunk 400 too), in the envelope, and the connection closed;
      having answered, the server reads and drops what the client still sends for a moment (_LINGER)
      before it closes, so that the client is not reset before it reads the answer;
    - beyond `max_connections` open connections a new one is answered 503 and closed.

    Timeouts are checked every `tick` seconds. `serve(keep_going)` runs the loop while keep_going() is
    true; `close(grace)` stops accepting, lets the requests under way finish and closes the rest."""

    def __init__(self, app, limits: Limits, threads: int, host: str = "127.0.0.1", port: int = 0, sockets=()):
        from waitress.adjustments import Adjustments
        from waitress.task import ThreadedTaskDispatcher

        self.tick = min(1.0, limits.read_timeout / 8)
        adj = Adjustments(
            host=host, port=port, threads=threads, ident="paddle-electra",
            max_request_body_size=limits.max_body_bytes + 1,  # waitress refuses sizes >= its limit
            max_request_header_size=64 * 1024,  # 431 beyond
            channel_timeout=limits.read_timeout, cleanup_interval=self.tick, asyncore_loop_timeout=self.tick,
            connection_limit=limits.max_connections + _BUSY_SLOTS, asyncore_use_poll=True,  # poll: no 1024-fd cap
            log_socket_errors=False)  # a client's reset is no server error
        # "Task queue depth is N": requests waiting for a request thread are the batcher's normal input
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.map, self.dispatcher = {}, ThreadedTaskDispatcher()
        self.dispatcher.set_thread_count(threads)
        server_class = _waitress_server_class(limits)
        if sockets:  # gunicorn's, bound by its master
            self.listeners = [server_class(app, self.map, _sock=sock, dispatcher=self.dispatcher, adj=adj,
                                           bind_socket=False,
                                           sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
                              for sock in sockets]
        else:
            self.listeners = [server_class(app, self.map, dispatcher=self.dispatcher, adj=adj)]
        self.port = int(self.listeners[0].effective_port)

    def serve(self, keep_going=lambda: True):
        from waitress import wasyncore
        while keep_going():
            wasyncore.loop(timeout=self.tick, map=self.map, use_poll=True, count=1)

    def close(self, grace: float = 10.0):
        from waitress import wasyncore
        for listener in self.listeners:
            listener.close()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(ch.requests or ch.total_outbufs_len
                                                  for listener in self.listeners
                                                  for ch in list(listener.active_channels.values())):
            wasyncore.loop(timeout=0.1, map=self.map, use_poll=True, count=1)
        self.dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self.map)


def _ensure_open_files(limits: Limits) -> None:
    """Raises this process's soft limit of open files to what max_connections needs (within the hard
    limit; gunicorn's workers inherit it), or ServeError."""
    import resource
    needed = limits.max_connections + _BUSY_SLOTS + _OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ServeError(f"--max-connections {limits.max_connections} needs {needed} open files and this process "
                         f"may open {hard} (ulimit -Hn): lower --max-connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _waitress_server_class(limits: Limits):
    """waitress's TcpWSGIServer with the limits HTTPServer describes (its parser, channel and error answer
    subclassed at their hooks: parser_class, channel_class, error_task_class, maintenance)."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser
    from waitress.server import TcpWSGIServer
    from waitress.task import ErrorTask

    class Request(HTTPRequestParser):
        def __init__(self, adj):  # waitress makes one per request, on its first bytes
            super().__init__(adj)
            self.started = time.monotonic()

    class EnvelopeErrorTask(ErrorTask):
        """waitress's answer to a request it does not pass on (413, 400, 431, 501), in the envelope."""

        def execute(self):
            e = self.request.error
            msg = (f"the request body is over the limit of {limits.max_body_bytes} bytes" if e.code == 413
                   else f"{e.reason}: {e.body}")
            body = json.dumps(envelope(str(e.code), msg)).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class Channel(HTTPChannel):
        parser_class, error_task_class = Request, EnvelopeErrorTask
        linger_until = None  # closing after an answer: reading and dropping what comes until then
        closing_after_answer = False

        def __init__(self, server, sock, addr, adj, map=None):
            busy = len(server.active_channels) >= limits.max_connections
            super().__init__(server, sock, addr, adj, map)
            if busy:  # the 503 is sent as soon as the socket is writable; then lingering, closed
                self.outbufs[-1].append(_BUSY_RESPONSE)
                self.total_outbufs_len = len(_BUSY_RESPONSE)
                self.close_when_flushed = True

        def handle_write(self):
            # waitress closes (handle_close) once an answer that ends the connection is sent
            self.closing_after_answer = self.close_when_flushed and not self.will_close
            super().handle_write()

        def handle_close(self):
            if self.closing_after_answer and self.linger_until is None and self.connected:
                try:
                    self.socket.shutdown(socket.SHUT_WR)  # our side is done: the client reads the answer, then EOF
                except OSError:
                    pass
                else:
                    self.will_close, self.linger_until = False, time.monotonic() + _LINGER
                    return
            super().handle_close()

        def handle_read(self):
            if self.linger_until is None:
                return super().handle_read()
            try:
                if self.socket.recv(1 << 16):
                    return
            except BlockingIOError:
                return
            except OSError:
                pass
            super().handle_close()  # the client closed (or reset) its side

    class Server(TcpWSGIServer):
        channel_class = Channel

        def maintenance(self, now):
            super().maintenance(now)  # no request for read_timeout (channel_timeout): closed
            mono = time.monotonic()
            for channel in self.active_channels.values():
                if channel.linger_until is not None:
                    channel.will_close = channel.will_close or channel.linger_until < mono
                elif channel.request is not None and not channel.requests and \
                        channel.request.started < mono - limits.read_timeout:
                    channel.will_close = True  # a request not whole after read_timeout: idle or slowloris

    return Server


def _gunicorn(load_app, host: str, port: int, workers: int, threads: int, limits: Limits):
    """`--workers N`: gunicorn's master (it binds, forks, restarts, stops the workers) with workers of ours
    that serve with HTTPServer on the socket it bound (gunicorn's own workers hand a connection to a
    thread that then waits on the client: idle and slow clients held them all). Each worker loads the
    modules itself, after the fork. A module that fails to load in a worker ends the server with that one
    line (ServeError): the worker hands it to the master in a file and exits with gunicorn's app-load-error
    code, and gunicorn's own log is kept to warnings and, once a worker has failed so, to nothing (it
    printed the error once per worker, then its shut-down lines and, racing with the second worker's exit,
    HaltServer tracebacks)."""
    import tempfile
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.errors import HaltServer
    from gunicorn.glogging import Logger
    from gunicorn.workers.base import Worker as GunicornWorker

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

    class Worker(GunicornWorker):
        def run(self):
            server = HTTPServer(self.wsgi, limits, threads, sockets=[s.sock for s in self.sockets])

            def keep_going():
                self.notify()  # the master's heartbeat
                return self.alive and self.ppid == os.getppid()  # SIGTERM: alive is False

            try:
                server.serve(keep_going)
            finally:
                server.close(self.cfg.graceful_timeout)

    class App(BaseApplication):
        def load_config(self):
            for k, v in {"bind": f"{host}:{port}", "workers": workers, "worker_class": Worker,
                         "timeout": 300, "graceful_timeout": 10, "accesslog": None, "loglevel": "warning",
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
    p.add_argument("--threads", type=_positive(int), default=16,
                   help="request threads per process (default 16); they take whole requests only, and those "
                        "waiting together share model calls")
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

    _ensure_open_files(limits)
    where = f"http://{args.host}:{port}"
    if workers and workers > 1:
        print(f"serving {', '.join(modules_info)} on {where} with {workers} gunicorn workers", flush=True)
        _gunicorn(load_app, args.host, port, workers, args.threads, limits)
        return 0
    app = load_app()
    try:
        server = HTTPServer(app, limits, args.threads, host=args.host, port=port)
    except OSError as e:
        raise ServeError(f"cannot listen on {args.host}:{port}: {e.strerror}") from None
    print(f"serving {', '.join(modules_info)} on {where}", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
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
