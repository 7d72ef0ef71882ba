"""sandlet's guest SDK for Python algorithms.

An algorithm is a module named ``algorithm`` with a function ``run`` that
takes the input (parsed JSON) and returns anything JSON can hold::

    import sandlet

    def run(args: dict) -> dict:
        table = sandlet.query('SELECT COUNT(age) AS n FROM patients')
        return {"count": table.rows[0][0]}

Data comes only from :func:`query`, which the host answers under the
station's disclosure policy; a refusal is raised as a :class:`QueryError`
subclass (:class:`NotGranted`, :class:`Denied`, :class:`Invalid`,
:class:`LimitExceeded`). Raise :class:`AlgorithmError` (or let a
``QueryError`` through) to end the run with an error message; the run's
result is then ``err`` and nothing else of the exception leaves.

Built with componentize-py against ``wit/0.1.0/algorithm.wit`` (world
``sandlet:algorithm/algorithm``); ``sandlet_app`` is the component's entry.
There is no network and no native extension (no numpy or pandas): use
``math``, ``statistics``, ``json``, ``decimal``, ``fractions``.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

from wit_world.imports import data as _data
from componentize_py_types import Err as _Err

Value = Optional[Any]  # None, bool, int, float or str


class AlgorithmError(Exception):
    """Ends the run with this message as its error."""


class QueryError(AlgorithmError):
    """The host refused a query; ``kind`` is the WIT error's case name."""

    kind = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class NotGranted(QueryError):
    """A dataset or column this run was not granted (or that does not exist)."""

    kind = "not-granted"


class Denied(QueryError):
    """The query breaks the dataset's disclosure policy; the message names the rule."""

    kind = "denied"


class Invalid(QueryError):
    """The SQL cannot be parsed or planned."""

    kind = "invalid"


class LimitExceeded(QueryError):
    """A time, row or memory limit of the query."""

    kind = "limit-exceeded"


_ERRORS = {
    _data.Error_NotGranted: NotGranted,
    _data.Error_Denied: Denied,
    _data.Error_Invalid: Invalid,
    _data.Error_LimitExceeded: LimitExceeded,
}


def _native(value: Any) -> Value:
    """A WIT ``value`` as the Python value it holds (``null`` is None)."""
    if isinstance(value, _data.Value_Null):
        return None
    return value.value


class Table:
    """A query's answer: column names and rows of native values."""

    def __init__(self, columns: Sequence[str], rows: List[Tuple[Value, ...]]):
        self.columns = list(columns)
        self.rows = rows

    def records(self) -> List[Dict[str, Value]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> List[Value]:
        """One column's values, in row order."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def query(sql: str) -> Table:
    """Runs one SQL query on the granted datasets (each is a table of its
    own name) and returns the answer, or raises a :class:`QueryError`."""
    try:
        table = _data.query(sql)
    except _Err as refused:
        error = refused.value
        raise _ERRORS.get(type(error), QueryError)(error.value) from None
    return Table(table.columns, [tuple(_native(v) for v in row) for row in table.rows])


def datasets() -> Dict[str, List[Tuple[str, str]]]:
    """The datasets granted to this run: name -> [(column, type), ...],
    visible columns only."""
    return {d.name: [(c.name, c.data_type) for c in d.columns] for d in _data.datasets()}


def quote(identifier: str) -> str:
    """An SQL identifier in double quotes, taken literally whatever it holds."""
    return '"' + identifier.replace('"', '""') + '"'
