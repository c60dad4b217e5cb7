import sqlite3

import pytest

from pipesql.storage.files import atomic_open, read_jsonl, write_jsonl
from pipesql.sql.schema import read_sqlite_schema
from pipesql.sql.execute import DatabaseError, QueryError, QueryTimeout, connect_readonly, execute


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customer(id), total REAL);
        INSERT INTO customer VALUES (1, 'Ada'), (2, 'Bo');
        INSERT INTO orders VALUES (1, 1, 9.5), (2, 1, 3.0), (3, 2, 4.25);
    """)
    conn.commit()
    conn.close()
    return path


def test_readonly_refuses_writes(db):
    conn = connect_readonly(db)
    with pytest.raises(QueryError, match="read-only"):
        execute(conn, "DELETE FROM orders")
    assert execute(conn, "SELECT count(*) FROM orders").rows == ((3,),)


def test_row_cap_truncates(db):
    result = execute(connect_readonly(db), "SELECT * FROM orders", row_cap=2)
    assert len(result.rows) == 2 and result.truncated and result.columns == ("id", "customer_id", "total")


def test_runaway_query_times_out(db):
    runaway = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    with pytest.raises(QueryTimeout):
        execute(connect_readonly(db), runaway, timeout_s=0.2)


def test_missing_and_corrupt_databases_are_named(tmp_path):
    with pytest.raises(DatabaseError, match="not found.*nope.sqlite"):
        connect_readonly(tmp_path / "nope.sqlite")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError, match="corrupt.sqlite"):
        connect_readonly(corrupt)


def test_schema_reads_keys(db):
    schema = read_sqlite_schema(db)
    orders = schema.table("ORDERS")
    assert [c.name for c in orders.columns] == ["id", "customer_id", "total"]
    assert orders.column("id").primary_key and orders.foreign_keys[0].ref_table == "customer"
    assert schema.sqlglot_mapping()["customer"] == {"id": "INTEGER", "name": "TEXT"}


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("partial")
            raise RuntimeError("crash")
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_read_jsonl_reports_bad_lines(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n[1]\n{"a": 3}\n')
    errors = []
    assert [r["a"] for _, r in read_jsonl(path, errors)] == [1, 3]
    assert [e.line for e in errors] == [2, 3] and "pairs.jsonl:2" in str(errors[0])
