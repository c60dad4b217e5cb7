"""Database variants put the query's bounds where a wrong comparison shows: on the bound, on one
side of it only, inside an aggregate, in a group as large as a COUNT bound, and in rows that a
join reaches (:mod:`pipesql.validate.variants`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipesql.validate.variants import (ABOVE, BELOW, DEFAULT_ROWS, _build, _layout, first_disagreement, query_hints,
                                       source_of, variant_seed, variant_shape)


def _database(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    source_of.cache_clear()
    return path


def _variant(db: Path, gold: str, index: int) -> sqlite3.Connection:
    source = source_of(str(db))
    layout = _layout(source, query_hints(gold, source))
    try:
        return _build(layout, variant_seed(db, gold, index), *variant_shape(index, DEFAULT_ROWS))
    finally:
        layout.schema.close()


@pytest.fixture()
def singers(tmp_path) -> Path:
    """Singers born 1940 and 1960 in each country, none on the bounds the queries below use."""
    rows = ", ".join(f"({n}, 'singer {n}', {year}, '{country}')" for n, (year, country) in enumerate(
        [(1940, "France"), (1960, "France"), (1940, "Chile"), (1960, "Peru"), (1950, "Chile")]))
    return _database(tmp_path / "singer.sqlite", f"""
        CREATE TABLE singer (singer_id int PRIMARY KEY, name text, birth_year real, citizenship text);
        INSERT INTO singer VALUES {rows};""")


RANGES = ("SELECT citizenship FROM singer WHERE birth_year < 1945 "
          "INTERSECT SELECT citizenship FROM singer WHERE birth_year > 1955")


@pytest.mark.parametrize("mutant", [
    RANGES.replace("< 1945", "<= 1945"),
    RANGES.replace("> 1955", ">= 1955"),
])
def test_two_ranges_that_meet_a_bound_across_intersect_are_told_apart(singers, mutant):
    """``<= 1945`` differs only where one country has a singer born in 1945 and one after 1955 but
    none before 1945: a variant must leave out the side below the bound. Before, the narrow
    variants took both neighbours of every bound and missed both mutants."""
    conn = sqlite3.connect(singers)
    assert conn.execute(RANGES).fetchall() == conn.execute(mutant).fetchall()  # the database cannot tell
    conn.close()
    assert first_disagreement(singers, RANGES, [mutant])[0] is not None


def test_a_narrow_variant_keeps_one_side_of_each_bound(singers):
    years = {}
    for index in range(8):
        rows, side = variant_shape(index, DEFAULT_ROWS)
        if side:
            conn = _variant(singers, RANGES, index)
            years[side] = {row[0] for row in conn.execute("SELECT birth_year FROM singer")}
            assert conn.execute("SELECT count(*) FROM singer").fetchone()[0] == rows  # full (the repeated row breaks the key)
            conn.close()
    assert years[ABOVE] <= {1945, 1946, 1955, 1956} and {1945, 1955} <= years[ABOVE]
    assert years[BELOW] <= {1944, 1945, 1954, 1955} and {1945, 1955} <= years[BELOW]


def test_a_bound_on_an_aggregate_seeds_the_aggregated_column(tmp_path):
    """``HAVING sum(killed) > 10`` against ``>= 10``: the bound 10 goes into ``killed`` (a group of
    one row of 10 sums to it), through two joins. Before, a literal compared with an aggregate
    seeded nothing."""
    db = _database(tmp_path / "battle.sqlite", """
        CREATE TABLE battle (id int PRIMARY KEY, name text);
        CREATE TABLE ship (lost_in_battle int REFERENCES battle(id), id int PRIMARY KEY, name text);
        CREATE TABLE death (caused_by_ship_id int REFERENCES ship(id), id int PRIMARY KEY, killed int);
        INSERT INTO battle VALUES (1, 'a'), (2, 'b'), (3, 'c');
        INSERT INTO ship VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 3, 'z');
        INSERT INTO death VALUES (1, 1, 3), (1, 2, 4), (2, 3, 25), (3, 4, 1);""")
    gold = ("SELECT T1.id, T1.name FROM battle AS T1 JOIN ship AS T2 ON T1.id = T2.lost_in_battle "
            "JOIN death AS T3 ON T2.id = T3.caused_by_ship_id GROUP BY T1.id HAVING sum(T3.killed) > 10")
    mutant = gold.replace("> 10", ">= 10")
    source = source_of(str(db))
    assert query_hints(gold, source).literals[("death", "killed")][:2] == [10, 10]
    assert first_disagreement(db, gold, [mutant])[0] is not None


def test_a_narrow_variant_fills_a_group_to_a_count_bound_under_a_two_column_key(tmp_path):
    """``HAVING count(*) < 200`` against ``<= 200`` needs an airline with exactly 200 flights. The
    flights' key is (airline, flight number): before, the flight numbers of a narrow variant were
    drawn near the sampled ones and collided, so no group reached 200 rows."""
    flights = ", ".join(f"({1 + n % 2}, {n}, 'A', 'B')" for n in range(30))
    db = _database(tmp_path / "flights.sqlite", f"""
        CREATE TABLE airlines (uid INTEGER PRIMARY KEY, Airline TEXT);
        CREATE TABLE flights (Airline INTEGER, FlightNo INTEGER, SourceAirport TEXT, DestAirport TEXT,
                              PRIMARY KEY (Airline, FlightNo));
        INSERT INTO airlines VALUES (1, 'JetBlue'), (2, 'United');
        INSERT INTO flights VALUES {flights};""")
    gold = ("SELECT T1.Airline FROM airlines AS T1 JOIN flights AS T2 ON T1.uid = T2.Airline "
            "GROUP BY T1.Airline HAVING count(*) < 200")
    mutant = gold.replace("< 200", "<= 200")
    narrow = [index for index in range(8) if variant_shape(index, DEFAULT_ROWS)[1]]
    sizes = []
    for index in narrow:
        conn = _variant(db, gold, index)
        sizes.append(conn.execute("SELECT count(*) FROM flights").fetchone()[0])
        conn.close()
    assert all(size >= 199 for size in sizes), sizes  # every row asked for is there
    assert first_disagreement(db, gold, [mutant])[0] is not None


def test_a_row_on_the_bound_reaches_the_comparison_through_a_join(tmp_path):
    """A value on the bound tells ``>`` from ``>=`` only in a row that a join partner reaches: some
    variant holds a player whose person is exactly 200 tall, and the mutant is caught there."""
    db = _database(tmp_path / "poker.sqlite", """
        CREATE TABLE people (People_ID int PRIMARY KEY, Name text, Height real);
        CREATE TABLE poker_player (Poker_Player_ID int PRIMARY KEY, People_ID int REFERENCES people(People_ID),
                                   Earnings real);
        INSERT INTO people VALUES (1, 'a', 190), (2, 'b', 205), (3, 'c', 196), (4, 'd', 210);
        INSERT INTO poker_player VALUES (1, 1, 100.0), (2, 2, 250.5), (3, 4, 80.0);""")
    gold = ("SELECT avg(T2.Earnings) FROM people AS T1 JOIN poker_player AS T2 ON T1.People_ID = T2.People_ID "
            "WHERE T1.Height > 200")
    on_the_bound = ("SELECT count(*) FROM people AS T1 JOIN poker_player AS T2 ON T1.People_ID = T2.People_ID "
                    "WHERE T1.Height = 200")
    reached = []
    for index in range(8):
        conn = _variant(db, gold, index)
        reached.append(conn.execute(on_the_bound).fetchone()[0])
        conn.close()
    assert sum(count > 0 for count in reached) >= 2, reached
    found = first_disagreement(db, gold, [gold.replace("> 200", ">= 200")])[0]
    assert found is not None and reached[found.index] > 0
