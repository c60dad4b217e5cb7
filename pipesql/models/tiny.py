"""The ``tiny`` model: a random-initialised two-layer Qwen2 with a byte-level BPE tokenizer
trained here, in process, on SQL / pipe SQL / English text. Deterministic (the same bytes on
every build) and seconds to build, so tests and CPU smoke runs need no download."""

from __future__ import annotations

import contextlib
from pathlib import Path

from pipesql.models.chat_template import CHAT_TEMPLATE

TINY = "tiny"
# Bump when the tiny recipe changes, so stale caches are not reused.
TINY_VERSION = 1

# The chat-format tokens every ChatML model here uses.
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# Tool-call tags are ordinary added tokens (not special), as in Qwen2.5, so decoding keeps them.
TOOL_TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")


def _tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer learns its merges from: the prompts, SQL and pipe SQL, tool-call
    JSON and plain English. Fixed, so the tokenizer (and so the model) is deterministic."""
    from pipesql.agent import prompts

    keywords = (
        "SELECT FROM WHERE GROUP BY ORDER HAVING LIMIT JOIN LEFT RIGHT INNER OUTER ON AS AND OR NOT "
        "IN IS NULL LIKE BETWEEN DISTINCT COUNT SUM AVG MIN MAX UNION INTERSECT EXCEPT WITH CASE "
        "WHEN THEN ELSE END ASC DESC EXTEND AGGREGATE RENAME DROP SET CAST EXISTS ALL ANY"
    )
    sql = [
        "SELECT count(*) FROM singer",
        "SELECT name, country, age FROM singer ORDER BY age DESC",
        "SELECT T1.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id",
        "SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France'",
        "SELECT country, count(*) FROM singer GROUP BY country HAVING count(*) > 1",
        "SELECT DISTINCT name FROM employee WHERE salary BETWEEN 1000 AND 5000 LIMIT 10",
    ]
    pipe = [
        "FROM singer\n|> AGGREGATE COUNT(*)",
        "FROM singer\n|> ORDER BY age DESC\n|> SELECT name, country, age",
        "FROM concert AS T1\n|> JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id\n|> SELECT T1.name",
        "FROM singer\n|> WHERE country = 'France'\n|> AGGREGATE AVG(age), MIN(age), MAX(age)",
        "FROM singer\n|> AGGREGATE COUNT(*) AS cnt GROUP BY country\n|> WHERE cnt > 1",
        "FROM employee\n|> WHERE salary BETWEEN 1000 AND 5000\n|> SELECT DISTINCT name\n|> LIMIT 10",
        "FROM t\n|> EXTEND a + b AS c\n|> RENAME c AS d\n|> DROP e",
        prompts.END_MARKER,
    ]
    tools = [
        '{"name": "list_tables", "arguments": {}}',
        '{"name": "describe_table", "arguments": {"table": "singer"}}',
        '{"name": "sample_data", "arguments": {"table": "singer", "limit": 3}}',
        '{"name": "execute_pipe_sql", "arguments": {"sql": "FROM singer |> LIMIT 5"}}',
        '{"name": "validate_pipe_sql", "arguments": {"sql": "FROM singer"}}',
        '{"type": "function", "function": {"name": "list_tables", "description": "List the tables.", '
        '"parameters": {"type": "object", "properties": {}, "required": []}}}',
    ]
    english = [
        "How many singers do we have? What is the name of the oldest employee?",
        "Show the name and the release year of the song by the youngest singer.",
        "Question: Hint: Schema: Query so far: (empty) Database: Tables: Columns: rows",
        "The database schema lists every table with its columns, types, primary and foreign keys.",
    ]
    schema = ["CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)"]
    system = [prompts.STEP_SYSTEM_PROMPT, prompts.ONESHOT_SYSTEM_PROMPT, prompts.AGENT_SYSTEM_PROMPT]
    digits = [" ".join(str(i) for i in range(200))]
    return [keywords, *sql, *pipe, *tools, *english, *schema, *system, *digits] * 4


def _train_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        special_tokens=[ENDOFTEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        model_max_length=4096,
        padding_side="right",
    )
    tokenizer.add_tokens(list(TOOL_TAGS))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: str | Path) -> Path:
    """Write a tiny random Qwen2 and its tokenizer to ``out_dir`` (same bytes every time)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = _train_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
    )
    with seeded(0):
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(ENDOFTEXT)],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.to(torch.float32).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@contextlib.contextmanager
def seeded(seed: int):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
