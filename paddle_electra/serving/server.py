"""The HTTP server of both modes: waitress in one process (HTTPServer), or gunicorn's master over worker
processes each serving so (`--workers N`); the limits on connections (time to receive a request, body
size, open connections) live here, those on a request's content in app.py."""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

from .app import Limits, ServeError, envelope

logger = logging.getLogger(__name__)


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

