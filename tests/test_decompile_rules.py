"""Per-rule tables: standard SQL → the exact pipe SQL the decompiler emits.

Each table belongs to one rule family; a change of output is a change of training data, so it
must show up here. Every expected text was checked by hand, on SQLite (via pipe_to_sqlite)
and with ZetaSQL.
"""

import pytest

from pipesql.decompile import decompile, split_operators

SCHEMA = {
    "singer": {"Singer_ID": "INT", "Name": "TEXT", "Age": "INT", "Country": "VARCHAR(20)", "Net_Worth": "REAL"},
    "concert": {"concert_ID": "INT", "Singer_ID": "TEXT", "Year": "TEXT", "Stadium": "TEXT"},
    "order": {"id": "INT", "Order Date": "DATETIME"},
    "loan": {"id": "INT", "loan_date": "TEXT", "due": "DATE", "returned": "DATETIME", "fee": "REAL"},
}


CORE = [
    ('SELECT name FROM singer WHERE age > 20',
     'FROM singer\n|> WHERE Age > 20\n|> SELECT Name'),
    ('SELECT * FROM singer',
     'FROM singer'),
    ('SELECT name FROM singer ORDER BY age DESC LIMIT 3',
     'FROM singer\n|> ORDER BY Age DESC\n|> LIMIT 3\n|> SELECT Name'),
    ('SELECT name, age FROM singer ORDER BY age',
     'FROM singer\n|> SELECT Name, Age\n|> ORDER BY Age'),
    ('SELECT name FROM singer LIMIT 2 OFFSET 1',
     'FROM singer\n|> SELECT Name\n|> LIMIT 2 OFFSET 1'),
    ('SELECT "Order Date" FROM "order"',
     'FROM `order`\n|> SELECT `Order Date`'),
]


@pytest.mark.parametrize(("sql", "expected"), CORE)
def test_core(sql, expected):
    result = decompile(sql, SCHEMA)
    assert (result.pipe_sql) == expected


JOINS = [
    ('SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id WHERE T2.year = 2014',
     "FROM singer AS t1\n|> JOIN concert AS t2 ON t1.Singer_ID = SAFE_CAST(t2.Singer_ID AS INT64)\n|> WHERE t2.Year = '2014'\n|> SELECT t1.Name"),
    ('SELECT singer.name FROM singer, concert WHERE singer.singer_id = concert.singer_id',
     'FROM singer\n|> CROSS JOIN concert\n|> WHERE singer.Singer_ID = SAFE_CAST(concert.Singer_ID AS INT64)\n|> SELECT singer.Name'),
    ('SELECT T1.name FROM singer AS T1 LEFT JOIN concert AS T2 ON T1.singer_id = T2.singer_id WHERE T2.concert_id IS NULL',
     'FROM singer AS t1\n|> LEFT JOIN concert AS t2 ON t1.Singer_ID = SAFE_CAST(t2.Singer_ID AS INT64)\n|> WHERE t2.concert_ID IS NULL\n|> SELECT t1.Name'),
]


@pytest.mark.parametrize(("sql", "expected"), JOINS)
def test_joins(sql, expected):
    result = decompile(sql, SCHEMA)
    assert (result.pipe_sql) == expected


AGGREGATE = [
    ('SELECT count(*) FROM singer',
     'FROM singer\n|> AGGREGATE COUNT(*) AS count_star'),
    ('SELECT country, count(*) FROM singer GROUP BY country',
     'FROM singer\n|> AGGREGATE COUNT(*) AS count_star GROUP BY Country'),
    ('SELECT country FROM singer GROUP BY country HAVING avg(age) > 30',
     'FROM singer\n|> AGGREGATE AVG(Age) AS avg_age GROUP BY Country\n|> WHERE avg_age > 30\n|> SELECT Country'),
    ('SELECT country FROM singer GROUP BY country ORDER BY count(*) DESC LIMIT 1',
     'FROM singer\n|> AGGREGATE COUNT(*) AS count_star GROUP BY Country\n|> ORDER BY count_star DESC\n|> LIMIT 1\n|> SELECT Country'),
    ('SELECT count(*), country FROM singer GROUP BY country',
     'FROM singer\n|> AGGREGATE COUNT(*) AS count_star GROUP BY Country\n|> SELECT count_star, Country'),
    ('SELECT name, max(age) FROM singer',
     'FROM singer\n|> AGGREGATE MAX(Age) AS max_age, ANY_VALUE(Name HAVING MAX Age) AS Name\n|> SELECT Name, max_age'),
    ('SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id GROUP BY T2.singer_id ORDER BY count(*) DESC LIMIT 1',
     'FROM singer AS t1\n|> JOIN concert AS t2 ON t1.Singer_ID = SAFE_CAST(t2.Singer_ID AS INT64)\n|> AGGREGATE COUNT(*) AS count_star, ANY_VALUE(t1.Name) AS Name GROUP BY t2.Singer_ID\n|> ORDER BY count_star DESC\n|> LIMIT 1\n|> SELECT Name'),
    ('SELECT count(DISTINCT country) FROM singer',
     'FROM singer\n|> AGGREGATE COUNT(DISTINCT Country) AS count_distinct_country'),
    ('SELECT DISTINCT country FROM singer',
     'FROM singer\n|> AGGREGATE GROUP BY Country'),
]


@pytest.mark.parametrize(("sql", "expected"), AGGREGATE)
def test_aggregate(sql, expected):
    result = decompile(sql, SCHEMA)
    assert (result.pipe_sql) == expected


SUBQUERIES = [
    ('SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM concert)',
     'FROM singer\n|> WHERE CAST(Singer_ID AS STRING) IN (FROM concert |> SELECT concert.Singer_ID)\n|> SELECT Name'),
    ("SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM concert WHERE year = '2014')",
     "FROM singer\n|> WHERE NOT CAST(Singer_ID AS STRING) IN (FROM concert |> WHERE Year = '2014' |> SELECT concert.Singer_ID)\n|> SELECT Name"),
    ('SELECT name FROM singer AS s WHERE EXISTS (SELECT 1 FROM concert AS c WHERE c.singer_id = s.singer_id)',
     'FROM singer AS s\n|> WHERE EXISTS(FROM concert AS c |> WHERE SAFE_CAST(c.Singer_ID AS INT64) = s.Singer_ID)\n|> SELECT Name'),
    ('SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)',
     'FROM singer\n|> WHERE Age > (FROM singer |> AGGREGATE AVG(singer.Age) AS avg_age)\n|> SELECT Name'),
    ('SELECT name, (SELECT count(*) FROM concert AS c WHERE c.singer_id = singer.singer_id) FROM singer',
     'FROM singer\n|> SELECT Name, (FROM concert AS c |> WHERE SAFE_CAST(c.Singer_ID AS INT64) = singer.Singer_ID |> AGGREGATE COUNT(*) AS count_star) AS count_star'),
    ('SELECT a.name FROM (SELECT name, age FROM singer WHERE age > 20) AS a WHERE a.age < 50',
     'FROM (FROM singer |> WHERE Age > 20 |> SELECT Name, Age) AS a\n|> WHERE Age < 50\n|> SELECT Name'),
    ('WITH old AS (SELECT * FROM singer WHERE age > 60) SELECT name FROM old ORDER BY name',
     'WITH old AS (FROM singer |> WHERE Age > 60)\nFROM old\n|> SELECT Name\n|> ORDER BY Name'),
    # a derived table without an alias gets sqlglot's (qualify_tables runs only for such queries)
    ('SELECT count(*) FROM (SELECT name FROM singer WHERE age > 20)',
     'FROM (FROM singer |> WHERE Age > 20 |> SELECT Name) AS _0\n|> AGGREGATE COUNT(*) AS count_star'),
    ('SELECT name FROM singer, (SELECT max(age) AS m FROM singer) WHERE age = m',
     'FROM singer\n|> CROSS JOIN (FROM singer |> AGGREGATE MAX(Age) AS m) AS _0\n|> WHERE singer.Age = _0.m\n'
     '|> SELECT singer.Name'),
]


@pytest.mark.parametrize(("sql", "expected"), SUBQUERIES)
def test_subqueries(sql, expected):
    result = decompile(sql, SCHEMA)
    assert (result.pipe_sql) == expected


SET_OPERATIONS = [
    ("SELECT name FROM singer WHERE age > 30 UNION SELECT name FROM singer WHERE country = 'UK'",
     "FROM singer\n|> WHERE Age > 30\n|> SELECT Name\n|> UNION DISTINCT (FROM singer |> WHERE Country = 'UK' |> SELECT Name)"),
    ('SELECT name FROM singer INTERSECT SELECT stadium FROM concert',
     'FROM singer\n|> SELECT Name\n|> INTERSECT DISTINCT (FROM concert |> SELECT Stadium)'),
    ('SELECT name FROM singer EXCEPT SELECT stadium FROM concert ORDER BY name',
     'FROM singer\n|> SELECT Name\n|> EXCEPT DISTINCT (FROM concert |> SELECT Stadium)\n|> ORDER BY Name'),
    ('SELECT name FROM singer UNION ALL SELECT stadium FROM concert',
     'FROM singer\n|> SELECT Name\n|> UNION ALL (FROM concert |> SELECT Stadium)'),
]


@pytest.mark.parametrize(("sql", "expected"), SET_OPERATIONS)
def test_set_operations(sql, expected):
    result = decompile(sql, SCHEMA)
    assert (result.pipe_sql) == expected


SEMANTICS = [
    ('SELECT sum(age) / count(*) FROM singer',
     'FROM singer\n|> AGGREGATE SUM(Age) AS sum_age, COUNT(*) AS count_star\n|> SELECT DIV(sum_age, NULLIF(count_star, 0)) AS sum_age_expr'),
    ('SELECT name FROM singer WHERE net_worth > 10.5 AND age / 2 > 10',
     'FROM singer\n|> WHERE Net_Worth > 10.5 AND DIV(Age, 2) > 10\n|> SELECT Name'),
    ('SELECT CAST(age AS REAL) / 2 FROM singer',
     'FROM singer\n|> SELECT CAST(Age AS FLOAT64) / 2 AS age_expr'),
    ("SELECT name FROM singer WHERE name LIKE '%Ann%'",
     "FROM singer\n|> WHERE LOWER(Name) LIKE '%ann%'\n|> SELECT Name"),
    ('SELECT name FROM singer WHERE country = "France"',
     "FROM singer\n|> WHERE Country = 'France'\n|> SELECT Name"),
    ("SELECT name FROM singer WHERE singer_id = '3'",
     'FROM singer\n|> WHERE Singer_ID = 3\n|> SELECT Name'),
    ('SELECT year FROM concert WHERE year > 2010',
     "FROM concert\n|> WHERE Year > '2010'\n|> SELECT Year"),
    ("SELECT name || ' from ' || country FROM singer",
     "FROM singer\n|> SELECT Name || ' from ' || Country AS name_expr"),
    ('SELECT iif(age > 30, 1, 0) FROM singer',
     'FROM singer\n|> SELECT IF(Age > 30, 1, 0) AS if_age'),
    ('SELECT name, rank() OVER (ORDER BY age DESC) FROM singer',
     'FROM singer\n|> SELECT Name, RANK() OVER (ORDER BY Age DESC) AS rank'),
    ("SELECT CASE WHEN age > 30 THEN 'old' ELSE 'young' END FROM singer",
     "FROM singer\n|> SELECT CASE WHEN Age > 30 THEN 'old' ELSE 'young' END AS case_age"),
]


@pytest.mark.parametrize(("sql", "expected"), SEMANTICS)
def test_semantics(sql, expected):
    result = decompile(sql, SCHEMA)
    assert (result.pipe_sql) == expected


# SQLite date functions over ISO text → GoogleSQL DATETIME functions over SAFE_CAST(x AS DATETIME)
DATES = [
    ("SELECT strftime('%Y', loan_date), count(*) FROM loan GROUP BY strftime('%Y', loan_date)",
     "FROM loan\n|> AGGREGATE COUNT(*) AS count_star GROUP BY FORMAT_DATETIME('%Y', SAFE_CAST(loan_date AS DATETIME)) AS timetostr_loan_date"),
    ("SELECT id FROM loan WHERE strftime('%Y-%m', loan_date) = '2024-03'",
     "FROM loan\n|> WHERE FORMAT_DATETIME('%Y-%m', SAFE_CAST(loan_date AS DATETIME)) = '2024-03'\n|> SELECT id"),
    ('SELECT id, julianday(returned) - julianday(loan_date) FROM loan',
     'FROM loan\n|> SELECT id, DATETIME_DIFF(SAFE_CAST(returned AS DATETIME), SAFE_CAST(loan_date AS DATETIME), SECOND) / 86400 AS returned_expr'),
    ('SELECT avg(julianday(returned) - julianday(loan_date)) FROM loan',
     'FROM loan\n|> AGGREGATE AVG(DATETIME_DIFF(SAFE_CAST(returned AS DATETIME), SAFE_CAST(loan_date AS DATETIME), SECOND) / 86400) AS avg_returned'),
    ('SELECT id, julianday(loan_date) FROM loan',
     "FROM loan\n|> SELECT id, (DATETIME_DIFF(SAFE_CAST(loan_date AS DATETIME), CAST('1970-01-01 00:00:00' AS DATETIME), SECOND) / 86400 + 2440587.5) AS julianday_loan_date"),
    ("SELECT id FROM loan WHERE date(returned) = '2024-04-15'",
     "FROM loan\n|> WHERE FORMAT_DATETIME('%Y-%m-%d', SAFE_CAST(returned AS DATETIME)) = '2024-04-15'\n|> SELECT id"),
    ("SELECT id, date(loan_date, '+30 days') FROM loan",
     "FROM loan\n|> SELECT id, FORMAT_DATETIME('%Y-%m-%d', DATETIME_ADD(SAFE_CAST(loan_date AS DATETIME), INTERVAL 30 DAY)) AS date_loan_date"),
    ("SELECT id, datetime(loan_date, '-1 month', 'start of month') FROM loan",
     "FROM loan\n|> SELECT id, FORMAT_DATETIME('%Y-%m-%d %H:%M:%S', DATETIME_TRUNC(DATETIME_ADD(SAFE_CAST(loan_date AS DATETIME), INTERVAL -1 MONTH), MONTH)) AS datetime_loan_date"),
    ("SELECT strftime('%Y', 'now') - strftime('%Y', loan_date) FROM loan",
     "FROM loan\n|> SELECT SAFE_CAST(FORMAT_DATETIME('%Y', CURRENT_DATETIME()) AS INT64) - SAFE_CAST(FORMAT_DATETIME('%Y', SAFE_CAST(loan_date AS DATETIME)) AS INT64) AS loan_date_expr"),
    # two date columns subtracted: SQLite subtracts the leading numbers, the years
    ('SELECT id FROM loan WHERE returned - due > 1',
     'FROM loan\n|> WHERE EXTRACT(YEAR FROM SAFE_CAST(returned AS DATETIME)) - EXTRACT(YEAR FROM SAFE_CAST(due AS DATETIME)) > 1\n|> SELECT id'),
    ("SELECT id, CAST((julianday('2025-01-01') - julianday(due)) / 365.25 AS INTEGER) FROM loan",
     "FROM loan\n|> SELECT id, CAST(TRUNC((DATETIME_DIFF(SAFE_CAST('2025-01-01' AS DATETIME), SAFE_CAST(due AS DATETIME), SECOND) / 86400) / 365.25) AS INT64) AS cast_due"),
    ('SELECT avg(returned) FROM loan',
     'FROM loan\n|> AGGREGATE AVG(EXTRACT(YEAR FROM SAFE_CAST(returned AS DATETIME))) AS avg_returned'),
    # a modifier without a GoogleSQL spelling stays as it was (round-trips, does not analyze)
    ("SELECT id, date(loan_date, 'weekday 0') FROM loan",
     "FROM loan\n|> SELECT id, DATE(loan_date, 'weekday 0') AS date_loan_date"),
]


@pytest.mark.parametrize(("sql", "expected"), DATES)
def test_dates(sql, expected):
    assert decompile(sql, SCHEMA).pipe_sql == expected


# CAST(x AS INTEGER): SQLite truncates a REAL, GoogleSQL's cast rounds
CASTS = [
    ('SELECT id, CAST(fee AS INTEGER) FROM loan',
     'FROM loan\n|> SELECT id, CAST(TRUNC(fee) AS INT64) AS fee'),
    ('SELECT CAST(age AS INTEGER) FROM singer',
     'FROM singer\n|> SELECT CAST(Age AS INT64) AS age'),
    ('SELECT id, CAST(round(fee) AS INTEGER) FROM loan',
     'FROM loan\n|> SELECT id, CAST(ROUND(fee) AS INT64) AS cast_fee'),
]


@pytest.mark.parametrize(("sql", "expected"), CASTS)
def test_integer_casts(sql, expected):
    assert decompile(sql, SCHEMA).pipe_sql == expected


REASONS = [
    ('DELETE FROM singer',
     'unsupported:dml'),
    ('SELECT 1 WHERE 1',
     'unsupported:select_without_from'),
    ('SELECT DISTINCT country FROM singer ORDER BY age',
     'unsupported:distinct_order_by_scan_order'),
    ('CREATE TABLE x (a INT)',
     'unsupported:ddl'),
]


@pytest.mark.parametrize(("sql", "expected"), REASONS)
def test_reasons(sql, expected):
    result = decompile(sql, SCHEMA)
    assert (result.reason) == expected



def test_parse_error_is_a_reason():
    result = decompile("SELECT FROM WHERE", SCHEMA)
    assert result.pipe_sql is None and result.reason.startswith("parse_error: ")


def test_operators_are_the_lines():
    result = decompile("SELECT name FROM singer WHERE age > 20 ORDER BY name", SCHEMA)
    assert result.operators == ("FROM singer", "|> WHERE Age > 20", "|> SELECT Name", "|> ORDER BY Name")


def test_split_operators_joins_with_line_to_from():
    pipe = "WITH a AS (FROM t |> SELECT x)\nFROM a\n|> WHERE x IN (FROM u |> SELECT y)\n|> SELECT x"
    assert split_operators(pipe) == [
        "WITH a AS (FROM t |> SELECT x)\nFROM a", "|> WHERE x IN (FROM u |> SELECT y)", "|> SELECT x"]


def test_split_operators_ignores_pipes_in_strings():
    assert split_operators("FROM t\n|> WHERE a = '|> x'") == ["FROM t", "|> WHERE a = '|> x'"]


def test_deterministic():
    sql = "SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id GROUP BY T1.name"
    assert len({decompile(sql, SCHEMA).pipe_sql for _ in range(3)}) == 1


def test_without_schema_still_pipe_sql():
    result = decompile("SELECT a FROM t WHERE b > 1 ORDER BY a", None)
    assert result.pipe_sql == "FROM t\n|> WHERE b > 1\n|> SELECT a\n|> ORDER BY a"
