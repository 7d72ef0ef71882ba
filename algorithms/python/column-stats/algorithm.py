"""column-stats in Python: count, mean and sample variance of one numeric
column, over the whole dataset or per group. Same input and output as the
Rust version (algorithms/column-stats):

    {"dataset": "patients", "column": "age"}
      -> {"dataset", "column", "count", "mean", "variance"}
    {"dataset": "patients", "column": "age", "group_by": "sex"}
      -> {"dataset", "column", "group_by", "groups": [{"key", "count", "mean", "variance"}, ...]}

The numbers come from one aggregate query; the algorithm never sees a row.
"""

from typing import Any, Dict, Optional

import sandlet
from sandlet import AlgorithmError, quote


def number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    unknown = set(args) - {"dataset", "column", "group_by"}
    if unknown or not isinstance(args.get("dataset"), str) or not isinstance(args.get("column"), str):
        raise AlgorithmError(
            'invalid input: expected {"dataset": NAME, "column": NAME} and optionally "group_by"'
        )
    dataset, column = args["dataset"], args["column"]
    stats = f"COUNT({quote(column)}), AVG({quote(column)}), VAR_SAMP({quote(column)})"
    group_by = args.get("group_by")
    if group_by is None:
        table = sandlet.query(f"SELECT {stats} FROM {quote(dataset)}")
        count, mean, variance = table.rows[0]
        return {"dataset": dataset, "column": column, "count": count,
                "mean": number(mean), "variance": number(variance)}
    key = quote(group_by)
    table = sandlet.query(
        f"SELECT {key}, {stats} FROM {quote(dataset)} GROUP BY {key} ORDER BY {key}"
    )
    groups = [
        {"key": k, "count": count, "mean": number(mean), "variance": number(variance)}
        for k, count, mean, variance in table.rows
    ]
    return {"dataset": dataset, "column": column, "group_by": group_by, "groups": groups}
