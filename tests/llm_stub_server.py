"""A misbehaving OpenAI-compatible server for tests/test_llm_client.py, run as its own process:
``python tests/llm_stub_server.py`` prints ``PORT <n>`` and serves on 127.0.0.1:<n> until
killed.

``POST /v1/chat/completions`` answers with the next entry of the script, recording the request.
The test scripts it over HTTP:

- ``POST /_control/script`` with ``{"entries": [...], "reject_json_schema": bool}`` replaces
  the script and forgets the recorded requests. With ``reject_json_schema`` every request whose
  ``response_format.type`` is ``json_schema`` gets llama-cpp-python's answer to it (HTTP 500 and
  a validation message naming ``response_format``), without using an entry.
- ``GET /_control/requests`` gives the recorded requests: ``[{"path", "headers", "body"}]``.

An entry is an object: ``content`` (the answer's text, default ``"{}"``), ``usage`` (the usage
field, or null to leave it out; default 7 prompt and 3 completion tokens), ``status`` (default
200; an error status gets ``{"error": {"message": message}}``), ``message``, ``headers``,
``body`` (a JSON value sent instead of the envelope), ``raw`` (text sent instead), ``sleep``
(seconds to wait first) and ``drop`` (close the connection without answering). With the script
spent the server answers 500 ``stub script exhausted``.

``python tests/llm_stub_server.py --rule`` answers instead as tests/fact_model.RuleModel does (a
careful model's answers to Engram's extraction, conflict and answer prompts), for the servers'
end-to-end tests: ``engram serve`` with ``ENGRAM_LLM_BASE_URL`` pointing here. ``POST
/_control/down`` with ``{"down": true}`` makes it answer 503 to every completion until
``{"down": false}``; ``GET /_control/count`` gives ``{"completions": n}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What llama-cpp-python 0.3.36's server answers a json_schema response_format with (HTTP 500).
LLAMA_CPP_PYTHON_500 = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"llama_cpp/server/app.py\", "
    "line 376, in create_chat_completion\n    POST /v1/chat/completions"
)
DEFAULT_USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []
        self.reject_json_schema = False
        self.requests: list[dict[str, Any]] = []
        self.rule: Any = None  # a fact_model.RuleModel in --rule mode
        self.down = False
        self.completions = 0

    def script(self, spec: dict[str, Any]) -> None:
        with self.lock:
            self.entries = list(spec.get("entries", []))
            self.reject_json_schema = bool(spec.get("reject_json_schema", False))
            self.requests = []

    def take(self, record: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests.append(record)
            body = record["body"]
            form = body.get("response_format") if isinstance(body, dict) else None
            refused = isinstance(form, dict) and form.get("type") == "json_schema"
            if self.reject_json_schema and refused:
                return {"status": 500, "message": LLAMA_CPP_PYTHON_500}
            if not self.entries:
                return {"status": 500, "message": "stub script exhausted"}
            return self.entries.pop(0)

    def ruled(self, body: Any) -> dict[str, Any]:
        """The entry RuleModel's answer to ``body`` makes (503 while down)."""
        with self.lock:
            if self.down:
                return {"status": 503, "message": "the stub is down"}
            self.completions += 1
        from engram.llm import ChatMessage

        form = body["response_format"]
        name = form.get("json_schema", {}).get("name") or form.get("schema", {}).get("title")
        schema = type(str(name), (), {})
        messages = [ChatMessage(m["role"], m["content"]) for m in body["messages"]]
        with self.lock:  # RuleModel keeps its prompts in a list
            answer = self.rule(messages, schema)
            self.rule.prompts.clear()
        return {"content": json.dumps(answer)}


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path == "/_control/requests":
            with STATE.lock:
                payload = json.dumps(STATE.requests).encode()
            self._send(200, payload)
        elif self.path == "/_control/count":
            with STATE.lock:
                payload = json.dumps({"completions": STATE.completions}).encode()
            self._send(200, payload)
        else:
            self._send(404, b'{"error": {"message": "no such path"}}')

    def do_POST(self) -> None:
        body = self._read()
        if self.path == "/_control/script":
            STATE.script(body)
            self._send(200, b"{}")
            return
        if self.path == "/_control/down":
            with STATE.lock:
                STATE.down = bool(body.get("down"))
            self._send(200, b"{}")
            return
        record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                  "body": body}  # fmt: skip
        # in --rule mode not recorded: a long-running server would keep every prompt
        entry = STATE.take(record) if STATE.rule is None else STATE.ruled(body)
        time.sleep(float(entry.get("sleep", 0)))
        if entry.get("drop"):
            self.close_connection = True
            return
        try:
            self._answer(entry)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self.close_connection = True

    def _answer(self, entry: dict[str, Any]) -> None:
        status = int(entry.get("status", 200))
        headers = entry.get("headers")
        if "raw" in entry:
            self._send(status, str(entry["raw"]).encode(), headers)
            return
        if "body" in entry:
            payload: Any = entry["body"]
        elif status >= 400:
            payload = {"error": {"message": entry.get("message", "stub error"), "code": status}}
        else:
            payload = envelope(entry.get("content", "{}"), entry.get("usage", DEFAULT_USAGE))
        self._send(status, json.dumps(payload).encode(), headers)


def envelope(content: str, usage: dict[str, int] | None) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    answer: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    if usage is not None:
        answer["usage"] = usage
    return answer


def main() -> None:
    if "--rule" in sys.argv[1:]:
        from fact_model import RuleModel  # tests/ is this script's folder, so on sys.path

        STATE.rule = RuleModel()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
    sys.exit(0)
