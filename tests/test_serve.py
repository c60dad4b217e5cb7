"""The OpenAI-compatible server: started on 127.0.0.1 with port 0 in a thread, called over HTTP."""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
])
def test_bad_chat_requests_get_a_clear_400(server, body, message):
    status, answer = _request(server.url + "/v1/chat/completions", body)
    assert status == 400
    assert message in answer["error"]["message"]


def test_unknown_endpoint_is_404(server):
    assert _request(server.url + "/v2/everything")[0] == 404


def test_real_model_behind_the_server(db_dir):
    pytest.importorskip("transformers")
    settings = Settings(model="tiny", port=0, db_dir=[db_dir], device="cpu", backend="transformers", batch_wait_ms=1)
    server = make_server(settings)
    thread = start_in_thread(server)
    try:
        status, body = _request(server.url + "/v1/chat/completions", {
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "How many products?"}],
            "max_tokens": 6})
        assert status == 200, body
        assert body["model"] == "tiny"
        assert body["usage"]["completion_tokens"] <= 6 and body["usage"]["prompt_tokens"] > 0
        assert body["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


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
