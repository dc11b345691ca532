"""The hottest Core statements, run straight on SQLite's driver.

SQLAlchemy wraps each execution in Python of its own (an execution context,
a result object, events): about 12 µs, where SQLite needs 1-3 µs for these
one-row statements, and createPledge and a payment webhook run six or seven
of them in the group-commit writer. A `Direct` statement is compiled once
per set of columns; its values go in and come out through SQLAlchemy's own
type processors (dates), so callers see what `Connection.execute` gives.

PostgreSQL, and any statement that fails, go through SQLAlchemy as usual: a
failing statement changed nothing, so it is run again there, and SQLAlchemy
raises its own exception and tells its error listeners (the write health).
Only when SQLite has rolled the whole transaction back (a full disk, an I/O
error) is it not run again, since it would then commit on its own: the error
is raised as SQLAlchemy would raise it, and readiness learns of the fault from
its probe instead, within a second.

It reads what SQLAlchemy compiled (`positiontup`, `_result_columns`, the
binds' processors), so the SQLAlchemy version is bounded in pyproject.toml.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Insert, bindparam
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

Params = Mapping[str, Any]
_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Plan:
    """One compiled form: its SQL, where each parameter goes, how rows read."""

    sql: str
    # name, whether the caller must give it, its value otherwise, processor
    binds: tuple[tuple[str, bool, Any, _Processor], ...]
    # Builds a row with attribute access (a namedtuple's _make).
    make_row: Callable[[Iterable[Any]], tuple[Any, ...]] | None
    results: tuple[_Processor, ...]

    def arguments(self, params: Params) -> tuple[Any, ...]:
        values = []
        for name, required, default, process in self.binds:
            if name in params:
                value = params[name]
            elif required:
                raise KeyError(f"a value is required for {name!r}")
            else:
                value = default
            values.append(value if process is None else process(value))
        return tuple(values)

    def shape(self, raw: Sequence[tuple[Any, ...]]) -> list[Any]:
        make_row = self.make_row
        assert make_row is not None
        if not any(self.results):
            return [make_row(values) for values in raw]
        return [
            make_row(
                value if process is None else process(value)
                for value, process in zip(values, self.results, strict=True)
            )
            for values in raw
        ]


def _plan(compiled: SQLCompiler, dialect: Dialect) -> _Plan:
    binds = []
    for name in compiled.positiontup or ():
        param = compiled.binds[name]
        binds.append(
            (
                name,
                param.required,
                param.effective_value,
                param.type.dialect_impl(dialect).bind_processor(dialect),
            )
        )
    columns = compiled._result_columns
    make_row = None
    results: tuple[_Processor, ...] = ()
    if columns:
        names = [c.keyname for c in columns]
        make_row = namedtuple("Row", names, rename=True)._make  # type: ignore[attr-defined]
        results = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in columns
        )
    return _Plan(str(compiled), tuple(binds), make_row, results)


class Direct:
    """A Core statement (no expanding IN lists, no Python-side defaults)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[tuple[int, frozenset[str]], _Plan] = {}
        # run_many's statements, by how many rows and which keys
        self._together: dict[tuple[int, tuple[str, ...]], Direct] = {}

    def rows(self, conn: Connection, params: Params) -> list[Any]:
        """The rows a SELECT (or RETURNING) gives, with attribute access."""
        raw = self._raw(conn)
        if raw is None:
            return list(conn.execute(self.statement, params).all())
        plan = self._plan_for(conn.dialect, params)
        try:
            found = raw.execute(plan.sql, plan.arguments(params)).fetchall()
        except sqlite3.Error as exc:
            return list(self._again(conn, raw, params, exc).all())
        return plan.shape(found)

    def first(self, conn: Connection, params: Params) -> Any | None:
        found = self.rows(conn, params)
        return found[0] if found else None

    def read_one(self, readers: Readers, params: Params) -> Any | None:
        """The first row of a SELECT run alone, outside any transaction.

        On SQLite, straight on one of `readers`' driver connections (one
        statement reads one snapshot): a SQLAlchemy Connection's checkout,
        BEGIN and reset cost four times the statement, and even a pooled
        driver connection's checkout and reset cost three. PostgreSQL, and
        a statement that fails, go through SQLAlchemy."""
        engine = readers.engine
        if engine.dialect.name != "sqlite":
            return self._read_one(engine, params)
        plan = self._plan_for(engine.dialect, params)
        driver = readers.take()
        found = None
        try:
            found = driver.execute(plan.sql, plan.arguments(params)).fetchmany(1)
        except sqlite3.Error:
            pass
        finally:
            readers.give_back(driver, reusable=found is not None)
        if found is None:  # SQLAlchemy raises its own exception and tells its listeners
            return self._read_one(engine, params)
        rows = plan.shape(found)
        return rows[0] if rows else None

    def _read_one(self, engine: Engine, params: Params) -> Any | None:
        with engine.connect() as conn:
            return conn.execute(self.statement, params).first()

    def run(self, conn: Connection, params: Params) -> None:
        """Run a write with one set of values."""
        raw = self._raw(conn)
        if raw is None:
            conn.execute(self.statement, params)
            return
        plan = self._plan_for(conn.dialect, params)
        try:
            raw.execute(plan.sql, plan.arguments(params))
        except sqlite3.Error as exc:
            self._again(conn, raw, params, exc)

    def run_many(self, conn: Connection, rows: Sequence[Params]) -> None:
        """An INSERT of several rows (all with the same keys). On SQLite one
        statement with a VALUES group for each, so that a failure leaves
        none of them behind; on PostgreSQL the driver's executemany."""
        if not rows:
            return
        if len(rows) == 1:
            self.run(conn, rows[0])
            return
        if self._raw(conn) is None:
            conn.execute(self.statement, list(rows))
            return
        keys = tuple(rows[0])
        if any(row.keys() != rows[0].keys() for row in rows):
            raise ValueError("every row of run_many must have the same keys")
        shape = (len(rows), keys)
        together = self._together.get(shape)
        if together is None:
            together = self._together[shape] = Direct(self._values(len(rows), keys))
        together.run(
            conn,
            {f"{key}__{n}": row[key] for n, row in enumerate(rows) for key in keys},
        )

    def _values(self, count: int, keys: tuple[str, ...]) -> Executable:
        statement = self.statement
        assert isinstance(statement, Insert)
        columns = statement.table.c
        return statement.values(
            [
                {key: bindparam(f"{key}__{n}", type_=columns[key].type) for key in keys}
                for n in range(count)
            ]
        )

    def _again(
        self,
        conn: Connection,
        raw: sqlite3.Connection,
        params: Params,
        error: sqlite3.Error,
    ) -> Any:
        """A statement failed on the driver: it changed nothing, so run it
        again through SQLAlchemy for its exception and error listeners."""
        if not raw.in_transaction:
            # SQLite rolled the whole transaction back (a full disk, an I/O
            # error): run again, the statement would commit on its own.
            raise DBAPIError.instance(
                str(self.statement), None, error, sqlite3.Error
            ) from error
        return conn.execute(self.statement, params)

    @staticmethod
    def _raw(conn: Connection) -> sqlite3.Connection | None:
        """SQLite's own connection, inside a transaction already begun (else
        SQLAlchemy runs the statement: it begins the transaction first)."""
        if conn.dialect.name != "sqlite" or not conn.in_transaction():
            return None
        driver = conn.connection.driver_connection
        if not isinstance(driver, sqlite3.Connection) or not driver.in_transaction:
            # Also when SQLite ended the transaction on its own: SQLAlchemy
            # runs the statement, as it did before there were direct ones.
            return None
        return driver

    def _plan_for(self, dialect: Dialect, params: Params) -> _Plan:
        # An INSERT's columns are the keys given, as with Connection.execute.
        key = (id(dialect), frozenset(params))
        plan = self._plans.get(key)
        if plan is None:
            compiled = self.statement.compile(  # type: ignore[attr-defined]
                dialect=dialect, column_keys=list(params)
            )
            if compiled.insert_prefetch or compiled.update_prefetch:
                raise TypeError("a Direct statement cannot have Python-side defaults")
            if compiled.post_compile_params or compiled.literal_execute_params:
                # Rendered per call (IN lists): the driver would refuse the SQL.
                raise TypeError("a Direct statement cannot have expanding binds")
            plan = self._plans[key] = _plan(compiled, dialect)
        return plan


class Readers:
    """SQLite driver connections kept aside for single statements run outside
    any transaction (Direct.read_one), a few at most (thread-safe).

    Each is made by the engine's pool, so it has the pool's connect-time
    settings (pragmas, busy timeout), then detached from it: taking one and
    giving it back is a list's pop and append, where the pool's checkout,
    events and reset on return cost about 75,000 instructions, three times
    the statement they wrapped. None is ever in a transaction (a SELECT on
    Python's driver begins none), so none holds a snapshot or a lock while
    kept. One that failed a statement is closed, not kept; so is every one
    once `close()` has run (the Database is disposed).
    """

    def __init__(self, engine: Engine, keep: int = 4) -> None:
        self.engine = engine
        self.keep = keep
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def take(self) -> sqlite3.Connection:
        try:
            return self._idle.pop()  # atomic: no two threads get the same one
        except IndexError:
            pooled = self.engine.raw_connection()
            driver = pooled.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            pooled.detach()
            return driver

    def give_back(self, driver: sqlite3.Connection, *, reusable: bool = True) -> None:
        if (
            reusable
            and not self._closed
            and not driver.in_transaction
            and len(self._idle) < self.keep
        ):
            self._idle.append(driver)
        else:
            driver.close()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # taken meanwhile: closed when given back
                break

    def __len__(self) -> int:
        return len(self._idle)
