"""SQLite values as GoogleSQL values and back: the column types of a catalog, a stored value
converted to its column's type (or refused when that would lose it), a database's rows as
ZetaSQL table contents, and ZetaSQL's result cells as the values SQLite would have returned."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

from pipesql.sql.execute import connect_readonly
from pipesql.sql.googlesql.errors import GoogleSQLError, NotRepresentable
from pipesql.sql.identifiers import sqlite_identifier
from pipesql.sql.schema import DatabaseSchema, schema_from_connection

# Databases with more rows than this (all tables together) are not loaded for execution.
MAX_EXECUTE_ROWS = 50_000
TYPE_KINDS = {"INT64": "TYPE_INT64", "FLOAT64": "TYPE_DOUBLE", "STRING": "TYPE_STRING", "BOOL": "TYPE_BOOL",
              "DATE": "TYPE_DATE", "NUMERIC": "TYPE_NUMERIC"}
_INTEGER_TEXT = re.compile(r"\s*[-+]?\d+\s*")


def googlesql_type(declared: str | None) -> str:
    """The GoogleSQL type of a column of this declared SQLite type (the decompiler's mapping)."""
    from pipesql.sql.types import googlesql_type as decompiler_mapping

    return decompiler_mapping(declared)


def catalog_types(schema: DatabaseSchema) -> dict[str, dict[str, str]]:
    """``{table: {column: GoogleSQL type}}`` for a schema."""
    return {t.name: {c.name: googlesql_type(c.type) for c in t.columns} for t in schema.tables}


def _sqlite_text(value: Any) -> str:
    # Close to SQLite's CAST(x AS TEXT): 1.0 stays '1.0' (exponents are spelled differently).
    return repr(value) if isinstance(value, float) else str(value)


def coerce(value: Any, type_name: str) -> Any:
    """A stored SQLite value as a value of ``type_name``; raises ValueError when that would lose it."""
    if value is None:
        return None
    if type_name == "STRING":
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", errors="replace")
        return value if isinstance(value, str) else _sqlite_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError("a BLOB")
    if type_name in ("INT64", "BOOL"):
        if isinstance(value, int):
            result = int(value)
        elif isinstance(value, float) and value.is_integer():
            result = int(value)
        elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
            result = int(value)
        else:
            raise ValueError(f"{value!r} is not an integer")
        if not -(2**63) <= result < 2**63:
            raise ValueError(f"{value!r} does not fit INT64")
        return bool(result) if type_name == "BOOL" else result
    if type_name == "FLOAT64":
        if isinstance(value, (int, float)):
            return float(value)
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if math.isnan(number):
            raise ValueError(f"{value!r} is not a number")
        return number
    raise ValueError(f"unsupported column type {type_name}")


def load_database(path: Path, pb=None) -> tuple[DatabaseSchema, dict]:
    """The schema and every table's rows as ZetaSQL table contents, converted to the columns'
    GoogleSQL types. Raises :class:`NotRepresentable` (too many rows, or a value that does not
    fit its column)."""
    if pb is None:
        from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2 as pb
    conn = connect_readonly(path)
    try:
        schema = schema_from_connection(conn)
        total = 0
        for table in schema.tables:
            total += conn.execute(f"SELECT count(*) FROM {sqlite_identifier(table.name)}").fetchone()[0]
            if total > MAX_EXECUTE_ROWS:
                raise NotRepresentable(f"{path.name}: more than {MAX_EXECUTE_ROWS} rows")
        types = catalog_types(schema)
        contents = {}
        for table in schema.tables:
            column_types = [types[table.name][c.name] for c in table.columns]
            names = ", ".join(sqlite_identifier(c.name) for c in table.columns)
            content = pb.TableContent()
            content.table_data.SetInParent()  # an empty table must still say it has (no) rows
            for stored in conn.execute(f"SELECT {names} FROM {sqlite_identifier(table.name)}"):
                row = content.table_data.row.add()
                for column, type_name, value in zip(table.columns, column_types, stored):
                    try:
                        _set_cell(row.cell.add(), coerce(value, type_name), type_name)
                    except ValueError as error:
                        raise NotRepresentable(f"{table.name}.{column.name} ({type_name}): {error}") from None
            contents[table.name] = content
        return schema, contents
    except sqlite3.DatabaseError as error:
        raise GoogleSQLError(f"cannot read {path}: {error}") from None
    finally:
        conn.close()


def _set_cell(cell, value: Any, type_name: str) -> None:
    if value is None:
        return  # an empty ValueProto is NULL
    if type_name == "STRING":
        cell.string_value = value
    elif type_name == "INT64":
        cell.int64_value = value
    elif type_name == "FLOAT64":
        cell.double_value = value
    elif type_name == "BOOL":
        cell.bool_value = value


# --- decoding results -----------------------------------------------------------------------------

_EPOCH = dt.date(1970, 1, 1)


def _decode_numeric(raw: bytes, scale: int) -> float:
    # NUMERIC / BIGNUMERIC: little-endian two's complement integer, scaled by 10^9 / 10^38.
    return float(decimal.Decimal(int.from_bytes(raw, "little", signed=True)).scaleb(-scale))


def _decode_datetime(bits: int) -> str:
    second, minute, hour = bits & 0x3F, (bits >> 6) & 0x3F, (bits >> 12) & 0x1F
    day, month, year = (bits >> 17) & 0x1F, (bits >> 22) & 0xF, bits >> 26
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"


def decode_value(cell) -> Any:
    """A ZetaSQL ValueProto as the Python value SQLite would have returned."""
    kind = cell.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(cell, kind)
    if kind == "bool_value":
        return int(value)
    if kind == "numeric_value":
        return _decode_numeric(value, 9)
    if kind == "bignumeric_value":
        return _decode_numeric(value, 38)
    if kind == "date_value":
        return (_EPOCH + dt.timedelta(days=value)).isoformat()
    if kind == "datetime_value":
        return _decode_datetime(value.bit_field_datetime_seconds)
    if kind == "timestamp_value":
        moment = dt.datetime.fromtimestamp(value.seconds, tz=dt.timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if kind == "bytes_value":
        return bytes(value).decode("utf-8", errors="replace")
    if kind == "array_value":
        return tuple(decode_value(e) for e in value.element)
    if kind == "struct_value":
        return tuple(decode_value(f) for f in value.field)
    if kind in ("int32_value", "int64_value", "uint32_value", "uint64_value", "double_value", "float_value",
                "string_value"):
        return value
    return str(value)
