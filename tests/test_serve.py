"""The OpenAI-compatible server: started on 127.0.0.1 with port 0 in a thread, called over HTTP."""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipesql.agent.tools import ROW_CAP
from pipesql.models.backends import ScriptedBackend
from pipesql.serve import Settings, make_server, parse_tool_calls, start_in_thread

TIMEOUT_S = 60


def _request(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("databases")
    (root / "shop").mkdir()
    conn = sqlite3.connect(root / "shop" / "shop.sqlite")
    conn.executescript("""
        CREATE TABLE product (id INTEGER PRIMARY KEY, name TEXT, price REAL);
        INSERT INTO product VALUES (1, 'pen', 1.5), (2, 'book', 12.0), (3, 'lamp', 30.0);
    """)
    conn.commit()
    conn.close()
    return root


def _scripted_answer(messages: list[dict]) -> str:
    last = messages[-1]["content"]
    if last == "tables?":
        return 'Let me look.\n<tool_call>\n{"name": "list_tables", "arguments": {}}\n</tool_call>'
    return f"echo: {last}"


@pytest.fixture
def server(db_dir):
    settings = Settings(model="scripted", port=0, db_dir=[db_dir], batch_wait_ms=300, max_tokens_limit=64)
    backend = ScriptedBackend(_scripted_answer)
    server = make_server(settings, backend=backend)
    thread = start_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_health_models_and_binding(server):
    assert server.server_address[0] == "127.0.0.1"
    status, body = _request(server.url + "/health")
    assert status == 200 and body["status"] == "ok" and body["model"] == "scripted"
    status, body = _request(server.url + "/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == ["scripted"]


def test_tools_run_against_the_named_database(server):
    status, body = _request(server.url + "/tools/list_tables", {"db_id": "shop", "arguments": {}})
    assert status == 200 and body["ok"]
    assert "product (3 columns, 3 rows)" in body["output"]
    status, body = _request(server.url + "/tools/execute_pipe_sql",
                            {"db_id": "shop", "arguments": {"sql": "FROM product |> WHERE price > 10 |> SELECT name"}})
    assert status == 200 and body["ok"]
    assert body["output"].splitlines()[:3] == ["name", "'book'", "'lamp'"]
    status, body = _request(server.url + "/tools/execute_pipe_sql", {"db_id": "shop", "arguments": {"sql": "FROM nowhere"}})
    assert status == 200 and not body["ok"] and body["output"].startswith("Error:")
    assert _request(server.url + "/tools/drop_table", {"db_id": "shop"})[0] == 404
    assert _request(server.url + "/tools/list_tables", {"db_id": "nope"})[0] == 404
    assert _request(server.url + "/tools/list_tables", {"db_id": "../shop"})[0] == 400
    status, body = _request(server.url + "/tools")
    assert status == 200 and "execute_pipe_sql" in [t["function"]["name"] for t in body["tools"]]


def test_the_database_is_not_writable_through_the_tools(server, db_dir):
    status, body = _request(server.url + "/tools/execute_pipe_sql",
                            {"db_id": "shop", "arguments": {"sql": "DELETE FROM product"}})
    assert status == 200 and not body["ok"]
    conn = sqlite3.connect(db_dir / "shop" / "shop.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM product").fetchone() == (3,)
    conn.close()


def test_chat_completion_with_tool_calls(server):
    tools = [{"type": "function", "function": {"name": "list_tables", "parameters": {"type": "object", "properties": {}}}}]
    status, body = _request(server.url + "/v1/chat/completions", {
        "model": "scripted", "messages": [{"role": "user", "content": "tables?"}], "tools": tools, "max_tokens": 32})
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "list_tables"
    assert json.loads(call["function"]["arguments"]) == {}
    # Without tools the same text is plain content.
    status, body = _request(server.url + "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "tables?"}], "max_tokens": 32})
    assert status == 200 and "tool_calls" not in body["choices"][0]["message"]
    assert "<tool_call>" in body["choices"][0]["message"]["content"]


def test_requests_arriving_together_are_generated_together(server):
    results: dict[int, str] = {}

    def ask(index: int) -> None:
        _, body = _request(server.url + "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": f"q{index}"}], "max_tokens": 8})
        results[index] = body["choices"][0]["message"]["content"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT_S)
    assert results == {i: f"echo: q{i}" for i in range(4)}
    assert sum(server.batches.batch_sizes) == 4
    assert max(server.batches.batch_sizes) > 1


@pytest.mark.parametrize("body, message", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n: Input should be 1"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}, "stop"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": "s" * 65}, "stop"),
    ({"messages": [{"role": "user"}]}, "needs content"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "content"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools.0.function"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": True}, "temperature"),
    ([1, 2, 3], "Input should be a valid dictionary"),
    # issue #21, class 4: before, 500
    ({"messages": [{"role": "user", "content": "lone \ud800"}]}, "messages.0.content: a lone surrogate at character 5"),
    ({"messages": [{"role": "user", "content": "x"}], "seed": 2**70}, "seed: Input should be less than or equal to"),
])
def test_bad_chat_requests_get_a_clear_400(server, body, message):
    status, answer = _request(server.url + "/v1/chat/completions", body)
    assert status == 400
    assert message in answer["error"]["message"]


def test_unknown_endpoint_is_404(server):
    assert _request(server.url + "/v2/everything")[0] == 404


def test_real_model_behind_the_server(tiny_server):
    status, body = _request(tiny_server.url + "/v1/chat/completions", {
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "How many products?"}],
        "max_tokens": 6})
    assert status == 200, body
    assert body["model"] == "tiny"
    assert body["usage"]["completion_tokens"] <= 6 and body["usage"]["prompt_tokens"] > 0
    assert body["choices"][0]["finish_reason"] in ("stop", "length")


def test_parse_tool_calls():
    text = ('<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": "{\\"y\\": 2}"}\n</tool_call>')
    content, calls = parse_tool_calls(text)
    assert content is None
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [("a", {"x": 1}), ("b", {"y": 2})]
    assert parse_tool_calls("<tool_call>not json</tool_call>") == ("<tool_call>not json</tool_call>", [])
    assert parse_tool_calls("plain") == ("plain", [])
    # A call cut off by max_tokens before its closing tag still parses when its JSON is whole.
    assert parse_tool_calls('<tool_call>{"name": "c", "arguments": {}}')[1][0]["function"]["name"] == "c"


def test_one_kept_alive_connection_serves_requests_in_step(server):
    import http.client

    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        for path, body, expected in [("/nowhere", {"x": "y" * 1000}, 404),
                                     ("/v1/chat/completions", {"messages": []}, 400),
                                     ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, 200)]:
            connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = json.loads(response.read())
            assert response.status == expected, payload
        assert payload["choices"][0]["message"]["content"] == "echo: hi"
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    finally:
        connection.close()


# --- issue #10: every attack over HTTP ----------------------------------------------------------------

import http.client  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

from sandbox_attacks import (BACK_TO_BACK, HUGE_VALUES, ONE_STEP_ESCAPES, PROBES, TEN_MILLION_ROWS,  # noqa: E402
                             TEN_MILLION_ROWS_SORTED, WRITES, build_db, file_hash, files_under, fill, reset_peak_rss, rss_mb)

TOOL_LIMIT_S = 2.0


def _call(server, method: str, path: str, body: object = None, headers: dict | None = None,
          raw: bytes | None = None) -> tuple[int, dict, dict]:
    host, port = server.server_address
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json"} if data is not None else {}
        sent.update(headers or {})
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        payload = response.read()
        return response.status, (json.loads(payload) if payload[:1] in (b"{", b"[") else {"raw": payload}), dict(response.getheaders())
    finally:
        connection.close()


@pytest.fixture
def music(tmp_path):
    """A database folder with `music` and a second copy `victim` an attack would like to change.
    Whatever the test does, afterwards both are byte for byte the same and no file appeared."""
    root = tmp_path / "dbs"
    (root / "music").mkdir(parents=True)
    db = build_db(root / "music" / "music.sqlite")
    victim = tmp_path / "victim.sqlite"
    shutil.copy(db, victim)
    hashes, files = (file_hash(db), file_hash(victim)), files_under(tmp_path)
    yield root, db, victim, tmp_path / "created.sqlite"
    assert (file_hash(db), file_hash(victim)) == hashes
    assert files_under(tmp_path) == files


def _serve(db_dir: Path, **extra):
    settings = Settings(model="scripted", port=0, db_dir=[db_dir], tool_timeout_s=TOOL_LIMIT_S, **extra)
    server = make_server(settings, backend=ScriptedBackend(_scripted_answer))
    start_in_thread(server)
    return server


@pytest.fixture
def music_server(music):
    server = _serve(music[0], read_timeout_s=1.0)
    yield server
    server.server_close()


def _probe_answers(server, again: bool = False) -> list[str]:
    """The probes' answers. ``again``: with a no-op `|> LIMIT` added, so the text differs from
    the first run and the tools' answer cache cannot answer for the database."""
    suffix = " |> LIMIT 1000" if again else ""
    return [_call(server, "POST", "/tools/execute_pipe_sql",
                  {"db_id": "music", "arguments": {"sql": probe + suffix}})[1]["output"] for probe in PROBES]


@pytest.mark.parametrize("tool", ["execute_pipe_sql", "validate_pipe_sql"])
def test_http_tools_cannot_write_open_files_or_change_later_answers(music, music_server, tool):
    root, db, victim, new_file = music
    hashes, files = (file_hash(db), file_hash(victim)), files_under(root.parent)
    before = _probe_answers(music_server)
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    for attack in WRITES:
        start = time.monotonic()
        status, body, _ = _call(music_server, "POST", f"/tools/{tool}",
                                {"db_id": "music", "arguments": {"sql": fill(attack, victim, new_file)}})
        assert status == 200 and not body["ok"] and body["output"].startswith("Error:"), (attack, body)
        assert time.monotonic() - start < TOOL_LIMIT_S + 1
    assert rss_mb("VmHWM") - rss_before < 100
    # Later callers, on the same long-lived connection, get the same answers.
    assert _probe_answers(music_server, again=True) == before
    assert (file_hash(db), file_hash(victim)) == hashes
    assert files_under(root.parent) == files and not new_file.exists()


@pytest.mark.parametrize("attack", [*HUGE_VALUES, TEN_MILLION_ROWS_SORTED, *ONE_STEP_ESCAPES[1:], BACK_TO_BACK])
def test_http_huge_results_fail_fast_in_little_memory(music_server, attack):
    before = _probe_answers(music_server)
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    start = time.monotonic()
    status, body, _ = _call(music_server, "POST", "/tools/execute_pipe_sql", {"db_id": "music", "arguments": {"sql": attack}})
    seconds = time.monotonic() - start
    assert status == 200 and not body["ok"], body
    assert "too big" in body["output"] or f"exceeded {TOOL_LIMIT_S:g} s" in body["output"], body
    assert seconds < TOOL_LIMIT_S + 1
    assert rss_mb("VmHWM") - rss_before < 100
    assert _probe_answers(music_server, again=True) == before


def test_http_ten_million_rows_answer_with_the_first_rows(music_server):
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    start = time.monotonic()
    body = _call(music_server, "POST", "/tools/execute_pipe_sql",
                 {"db_id": "music", "arguments": {"sql": TEN_MILLION_ROWS}})[1]
    assert body["ok"] and body["output"].splitlines()[-1] == f"(first {ROW_CAP} rows shown; the result has more)"
    assert time.monotonic() - start < TOOL_LIMIT_S + 1 and rss_mb("VmHWM") - rss_before < 100


def test_half_open_connections_are_closed_and_never_block_others(music_server):
    host, port = music_server.server_address
    half_open = []
    for _ in range(40):
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"messages\": ")
        half_open.append(sock)
    start = time.monotonic()
    assert _call(music_server, "GET", "/health")[0] == 200  # served while the 40 wait
    status, body, _ = _call(music_server, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: hi"
    assert time.monotonic() - start < 1
    time.sleep(1.5)  # past the 1 s read deadline: the server has closed every half-sent request
    for sock in half_open:
        sock.settimeout(2)
        assert sock.recv(1024) == b""
        sock.close()


def test_one_bad_request_in_a_batch_fails_alone(db_dir):
    def answer(messages):
        if messages[-1]["content"] == "boom":
            raise RuntimeError("this chat breaks the model")
        return f"echo: {messages[-1]['content']}"

    settings = Settings(model="scripted", port=0, db_dir=[db_dir], batch_wait_ms=300)
    server = make_server(settings, backend=ScriptedBackend(answer))
    start_in_thread(server)
    statuses: dict[str, int] = {}

    def ask(content) -> None:
        statuses[str(content)] = _call(server, "POST", "/v1/chat/completions",
                                       {"messages": [{"role": "user", "content": content}]})[0]

    try:
        threads = [threading.Thread(target=ask, args=(c,)) for c in ["q0", "q1", "boom", "q2", "q3", 42]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=TIMEOUT_S)
    finally:
        server.server_close()
    assert statuses == {"q0": 200, "q1": 200, "q2": 200, "q3": 200, "boom": 500, "42": 400}
    assert max(server.batches.batch_sizes) == 5  # the five valid chats were batched; the bad one then ran alone


@pytest.mark.parametrize("method, path, raw, headers, status", [
    ("POST", "/v1/chat/completions", b"{not json", {}, 400),
    ("POST", "/v1/chat/completions", b"", {}, 400),
    ("POST", "/v1/chat/completions", b"[" * 200_000, {}, 400),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e999}', {}, 400),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', {"Content-Type": "text/plain"}, 415),
    ("POST", "/v1/chat/completions", b"x" * 100, {"Content-Length": "99999999999"}, 413),
    ("POST", "/tools/list_tables", b'{"db_id": 7}', {}, 400),
    ("POST", "/tools/list_tables", b'{"db_id": "music", "arguments": [1]}', {}, 400),
    ("POST", "/tools/list_tables", b'"music"', {}, 400),
    ("GET", "/v1/chat/completions", None, {}, 405),
    ("DELETE", "/tools", None, {}, 405),
    ("GET", "/nothing/here", None, {}, 404),
])
def test_malformed_requests_get_a_4xx(music_server, method, path, raw, headers, status):
    got, body, _ = _call(music_server, method, path, raw=raw, headers=headers)
    assert got == status, body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]


def test_a_chunked_body_over_the_limit_gets_413(music):
    server = _serve(music[0], max_body_bytes=1000)
    try:
        host, port = server.server_address
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        connection.request("POST", "/v1/chat/completions", body=iter([b"{" + b" " * 800, b" " * 800 + b"}"]),
                           headers={"Content-Type": "application/json"}, encode_chunked=True)
        assert connection.getresponse().status == 413
        connection.close()
    finally:
        server.server_close()


def test_foreign_hosts_and_origins_are_refused(music_server, music):
    assert _call(music_server, "GET", "/v1/models", headers={"Host": "evil.example"})[0] == 400
    assert _call(music_server, "GET", "/v1/models", headers={"Host": "localhost:8000"})[0] == 200
    status, body, headers = _call(music_server, "POST", "/tools/list_tables", {"db_id": "music"},
                                  headers={"Origin": "https://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in {k.lower() for k in headers}
    preflight = _call(music_server, "OPTIONS", "/tools/list_tables",
                      headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight[0] == 403
    allowed = _serve(music[0], allowed_origin=["https://app.example"])
    try:
        status, _, headers = _call(allowed, "POST", "/tools/list_tables", {"db_id": "music"},
                                   headers={"Origin": "https://app.example"})
        assert status == 200 and headers.get("access-control-allow-origin") == "https://app.example"
        assert _call(allowed, "GET", "/health", headers={"Origin": "https://evil.example"})[0] == 403
    finally:
        allowed.server_close()


def test_a_remote_bind_needs_the_flag_and_a_key(music):
    with pytest.raises(SystemExit, match="--allow-remote"):
        _serve(music[0], host="0.0.0.0")
    with pytest.raises(SystemExit, match="--api-key"):
        _serve(music[0], host="0.0.0.0", allow_remote=True)
    server = _serve(music[0], host="0.0.0.0", allow_remote=True, api_key="s3cret", allowed_host=["*"])
    try:
        port = server.server_address[1]
        connection_host = ("127.0.0.1", port)
        assert server.server_address[0] == "0.0.0.0"

        def get(headers):
            connection = http.client.HTTPConnection(*connection_host, timeout=TIMEOUT_S)
            connection.request("GET", "/v1/models", headers=headers)
            return connection.getresponse().status

        assert get({}) == 401 and get({"Authorization": "Bearer wrong"}) == 401
        assert get({"Authorization": "Bearer s3cret"}) == 200
    finally:
        server.server_close()


def test_streaming_is_openai_server_sent_events(server):
    status, body, headers = _call(server, "POST", "/v1/chat/completions", {
        "messages": [{"role": "user", "content": "tables?"}], "stream": True, "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "list_tables", "parameters": {"type": "object"}}}]})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in body["raw"].decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    calls = [t for c in chunks if c["choices"] for t in c["choices"][0]["delta"].get("tool_calls", [])]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert content == "Let me look." and calls[0]["function"]["name"] == "list_tables" and finish == ["tool_calls"]
    assert chunks[-1]["choices"] == [] and "total_tokens" in chunks[-1]["usage"]


@pytest.fixture(scope="module")
def tiny_server(db_dir):
    pytest.importorskip("transformers")
    settings = Settings(model="tiny", port=0, db_dir=[db_dir], device="cpu", backend="transformers", batch_wait_ms=1)
    server = make_server(settings)
    start_in_thread(server)
    yield server
    server.server_close()


def test_prompts_are_capped_at_the_model_context(tiny_server):
    long_prompt = "select the singers " * 15_000  # 285,000 characters; the tiny model's context is 4,096 tokens
    start = time.monotonic()
    status, body, _ = _call(tiny_server, "POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": long_prompt}], "max_tokens": 4})
    assert status == 400 and "context of 4096 tokens" in body["error"]["message"]
    assert time.monotonic() - start < 2
    near = "select the singers " * 1_400  # fits alone, not with 4,000 completion tokens
    status, body, _ = _call(tiny_server, "POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": near}], "max_tokens": 4000})
    assert status == 400 and "max_tokens 4000" in body["error"]["message"]
    status, body, _ = _call(tiny_server, "POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "How many singers?"}], "max_tokens": 3})
    assert status == 200 and body["usage"]["completion_tokens"] <= 3


def test_tools_only_serves_the_tools_and_no_model(music):
    settings = Settings(port=0, db_dir=[music[0]], tools_only=True)
    server = make_server(settings)
    start_in_thread(server)
    try:
        assert _call(server, "GET", "/health")[1]["model"] is None
        status, body, _ = _call(server, "POST", "/tools/execute_pipe_sql",
                                {"db_id": "music", "arguments": {"sql": "FROM singer |> AGGREGATE COUNT(*) AS n"}})
        assert status == 200 and body["output"].splitlines()[:2] == ["n", "4"]
        assert _call(server, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})[0] == 404
    finally:
        server.server_close()


def test_the_openai_client_lists_models_completes_and_streams(server):
    """The official OpenAI Python client, as users will call the server."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["scripted"]
    tools = [{"type": "function", "function": {"name": "list_tables", "parameters": {"type": "object", "properties": {}}}}]
    answer = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "tables?"}],
                                            tools=tools, max_tokens=32)
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.choices[0].message.tool_calls[0].function.name == "list_tables"
    stream = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "echo: hi"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}], max_tokens=10_000)


def test_a_client_that_disconnects_stops_its_generation(tiny_server):
    """Issue #21, class 7: a client that goes away mid-generation stops it between tokens, so
    the next request does not wait for an answer nobody reads (before: it waited the whole
    generation, about 20 s here)."""
    import http.client

    host, port = tiny_server.server_address[:2]
    gone = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    gone.request("POST", "/v1/chat/completions", json.dumps(
        {"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 200}),
        {"Content-Type": "application/json"})
    time.sleep(1.0)  # generating now
    gone.close()
    start = time.monotonic()
    status, body, _ = _call(tiny_server, "POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "How many singers?"}], "max_tokens": 3})
    assert status == 200, body
    assert time.monotonic() - start < 5.0
