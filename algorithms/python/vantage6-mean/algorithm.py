"""vantage6-mean in Python, for an unmodified vantage6 node on sandlet (the
same as the Rust version, algorithms/vantage6-mean).

Method ``partial``, arguments ``{"column": NAME}`` (and optionally
``"dataset": NAME``): ``{"sum": S, "count": N}`` of the column over the
station's dataset, from one aggregate query the station's policy checks.
The dataset is the one named, or the only one the task is granted.
"""

from typing import Any, Dict

import sandlet
import sandlet_vantage6
from sandlet import AlgorithmError, quote


def _dataset(task: sandlet_vantage6.Task) -> str:
    named = task.optional_string("dataset")
    if named is not None:
        return named
    granted = sorted(sandlet.datasets())
    if len(granted) == 1:
        return granted[0]
    if not granted:
        raise AlgorithmError("this station grants the task no dataset")
    raise AlgorithmError(
        f"this station grants {len(granted)} datasets ({', '.join(granted)}): "
        'name one with the argument "dataset"'
    )


def partial(task: sandlet_vantage6.Task) -> Dict[str, Any]:
    column = quote(task.string("column"))
    table = sandlet.query(
        f"SELECT SUM({column}) AS s, COUNT({column}) AS n FROM {quote(_dataset(task))}"
    )
    total, count = table.rows[0]
    return {"sum": float(total or 0), "count": count}


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    # A vantage6 task's container gets no arguments: the task is in the
    # environment and the input file.
    return sandlet_vantage6.run({"partial": partial})
