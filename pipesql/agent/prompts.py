"""The conversation protocol shared by training-data generation and evaluation.

What the model sees at training time must be exactly what it sees at inference, so both sides
build their messages here and nowhere else.
"""

from __future__ import annotations

# The assistant's whole answer when the query so far is complete. Every trajectory in the
# training data ends with one sample whose answer is exactly this, so a step-by-step agent stops
# when the model says so rather than by a heuristic (a repeated operator, a length limit). A SQL
# comment, so that an agent which naively appends it to the query still has valid SQL.
END_MARKER = "-- done"

# How operators are joined into "the query so far": one operator per line, as the model is
# trained to read it and as an agent must rebuild it.
OPERATOR_SEPARATOR = "\n"

STEP_SYSTEM_PROMPT = (
    "You write GoogleSQL pipe syntax one operator at a time. Given a question, the database "
    "schema and the query so far, answer with exactly the next operator: the first step is a "
    "FROM clause (optionally preceded by WITH), every later step starts with '|>'. When the "
    f"query already answers the question, answer with '{END_MARKER}'."
)

ONESHOT_SYSTEM_PROMPT = (
    "You write GoogleSQL pipe syntax. Given a question and the database schema, answer with the "
    "complete query: a FROM clause followed by pipe operators, one per line, each starting with "
    "'|>'. Answer with the query only."
)

AGENT_SYSTEM_PROMPT = (
    "You answer questions about a SQLite database by writing GoogleSQL pipe syntax. Use the "
    "tools to look at tables, sample rows and try queries; build the query one operator at a "
    "time and check it as you go. Finish with the final pipe query alone in your last message."
)


def join_operators(operators: "list[str] | tuple[str, ...]") -> str:
    """The query made of ``operators`` (each a FROM clause or a ``|>`` line), as the prompt shows it."""
    return OPERATOR_SEPARATOR.join(op.strip() for op in operators)


def is_end(answer: str) -> bool:
    """Whether a step answer is the end marker (surrounding whitespace ignored)."""
    return answer.strip() == END_MARKER


def _context(question: str, schema_text: str, evidence: str | None) -> str:
    parts = [f"Question: {question}"]
    if evidence:
        parts.append(f"Hint: {evidence}")
    parts.append(f"Schema:\n{schema_text}")
    return "\n\n".join(parts)


def step_user_message(question: str, schema_text: str, query_so_far: str, evidence: str | None = None) -> str:
    so_far = query_so_far if query_so_far.strip() else "(empty)"
    return f"{_context(question, schema_text, evidence)}\n\nQuery so far:\n{so_far}"


def oneshot_user_message(question: str, schema_text: str, evidence: str | None = None) -> str:
    return _context(question, schema_text, evidence)


def agent_user_message(question: str, db_id: str, evidence: str | None = None) -> str:
    hint = f"\nHint: {evidence}" if evidence else ""
    return f"Database: {db_id}\nQuestion: {question}{hint}"
