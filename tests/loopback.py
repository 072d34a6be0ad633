"""Loopback HTTP endpoints the tests script: an OpenAI-compatible judge, annotator or replayed model, started on
127.0.0.1 on a free port for one test and stopped after it."""

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A quiet handler: `body()` is the request's JSON, `send_json` answers with JSON, `chat` as a chat completion."""

    def log_message(self, *args):
        pass

    def body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, obj, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chat(self, content: str) -> None:
        self.send_json({"choices": [{"message": {"role": "assistant", "content": content}}]})


class TieJudge(JsonHandler):
    """A judge that calls every pair a tie (what is under test is not the verdicts)."""

    def do_GET(self):
        self.send_json({"object": "list", "data": [{"id": "tie-judge"}]})

    def do_POST(self):
        self.chat(json.dumps({"rationale": "alike", "winner": "tie"}))


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler], **state) -> Iterator[http.server.ThreadingHTTPServer]:
    """`handler` served on loopback; `state` set as attributes of the server (handlers read `self.server.X`), with
    a `lock` for what handler threads share."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.lock = True, threading.Lock()
    for key, value in state.items():
        setattr(server, key, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def v1_url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"
