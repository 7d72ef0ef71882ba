"""federated-mean in Python: the partial step at each station and the
central step. Same input and output as the Rust version
(algorithms/federated-mean):

    {"dataset": "patients", "column": "age"}    -> {"sum": S, "count": N}
    {"combine": [{"sum": S1, "count": N1}, ...]} -> {"mean": M, "sum": S, "count": N}
"""

from typing import Any, Dict

import sandlet
from sandlet import AlgorithmError, quote


def partial(dataset: str, column: str) -> Dict[str, Any]:
    table = sandlet.query(
        f"SELECT SUM({quote(column)}) AS s, COUNT({quote(column)}) AS n FROM {quote(dataset)}"
    )
    total, count = table.rows[0]
    return {"sum": float(total or 0), "count": count}


def combine(partials) -> Dict[str, Any]:
    total = sum(float(p["sum"]) for p in partials)
    count = sum(int(p["count"]) for p in partials)
    if count == 0:
        raise AlgorithmError("no values at any station: the mean is undefined")
    return {"mean": total / count, "sum": total, "count": count}


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    if set(args) == {"dataset", "column"}:
        return partial(args["dataset"], args["column"])
    if set(args) == {"combine"} and isinstance(args["combine"], list):
        return combine(args["combine"])
    raise AlgorithmError(
        'invalid input: expected {"dataset", "column"} or {"combine": [...]}'
    )
