"""The HTTP server of the hub modules: `python -m paddle_electra.hub serving start -c config.json | -m NAME`.

`hub serving start`'s arguments, config files, routes (`POST /predict/<name>`, `/`) and envelope
(`{"msg", "results", "status"}`), served by an app of our own rather than PaddleHub's launcher, so that:

- it binds 127.0.0.1 unless `--host` says otherwise (PaddleHub binds every interface);
- every request is bounded: body size, examples per request, characters per string, the time to
  receive a request (idle and slowloris connections are dropped), open connections;
- every client error gets the envelope with a 4xx code (PaddleHub answers them HTTP 200, status
  "101"), our faults 5xx; a request is checked once, by its module, before it is merged with others,
  and a failure in a merged model call is retried per request, so one bad request never fails another;
- one process: waitress (HTTPServer) receives every connection in one event loop and hands whole
  requests to request threads, where those that wait together share model calls (RequestBatcher); or
  `--workers N`: gunicorn's master over N processes each serving so, each with its own model copy;
- `GET /health` for load balancers; modules are never downloaded (an unknown name is an error).

Entry points: `add_arguments(parser)` / `run(args)` (the CLI), `main(argv)` (`python -m paddle_electra.hub`).
This file: the command, its config and the modules it loads; app.py: the request (its check, once:
ServedModule.validate_request for our modules), the batcher and the Flask app; server.py: waitress and
gunicorn with the connection limits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import fields
from typing import Dict, List, Optional

from .app import (Limits, RequestBatcher, RequestError, ServedModule, ServeError, ServingRequest,  # noqa: F401
                  check_body, create_app, envelope, parse_body)
from .server import HTTPServer, _ensure_open_files, _gunicorn

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8866  # PaddleHub's


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
    from ..inference import ENGINES
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
    from ..io import remove_stale_temporaries
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
