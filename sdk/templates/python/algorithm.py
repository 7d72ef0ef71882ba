"""{{name}}: a sandlet algorithm.

Input: ``{"dataset": "example", "column": "value"}``.
Output: ``{"dataset": ..., "column": ..., "count": N, "mean": M}`` from one
aggregate query, which the data station answers under its disclosure policy
(a refusal is raised as ``sandlet.NotGranted``, ``sandlet.Denied``, ...).
"""

import sandlet


def run(args):
    if (
        not isinstance(args, dict)
        or set(args) != {"dataset", "column"}
        or not all(isinstance(value, str) for value in args.values())
    ):
        raise sandlet.AlgorithmError('invalid input: expected {"dataset": NAME, "column": NAME}')
    dataset, column = args["dataset"], args["column"]
    c = sandlet.quote(column)
    table = sandlet.query(f"SELECT COUNT({c}), AVG({c}) FROM {sandlet.quote(dataset)}")
    count, mean = table.rows[0]
    return {"dataset": dataset, "column": column, "count": count, "mean": mean}
