"""The researcher's side of the vantage6 end-to-end tests: the official
vantage6 5 client, run by $V6_PYTHON (scripts/vantage6) with
scripts/vantage6.d on PYTHONPATH for the password-grant login.

    python client.py task IMAGE METHOD ARGUMENTS_JSON [TIMEOUT]
    python client.py create IMAGE METHOD ARGUMENTS_JSON
    python client.py wait TASK TIMEOUT

`task` creates a task for every organisation of V6_ORGS in V6_COLLABORATION
and V6_SESSION, waits until each run has ended, and prints one JSON line:

    {"task": ID, "status": ..., "seconds": S,
     "runs": [{"organization": ID, "status": ..., "finished": BOOL,
               "result": ..., "log": ...}]}

where each result is the run's output parsed as JSON (null if there is
none). `create` prints the new task's id; `wait` waits for one.
"""

import json
import os
import sys
import time

from v6login import login


def create(client, image: str, method: str, arguments: str) -> int:
    """Creates a task for every organisation of V6_ORGS; its id."""
    task = client.task.create(
        organizations=[int(o) for o in os.environ["V6_ORGS"].split(",")],
        name=f"sandlet-{method}",
        image=image,
        description="sandlet end-to-end test",
        method=method,
        arguments=json.loads(arguments),
        session=int(os.environ["V6_SESSION"]),
        collaboration=int(os.environ["V6_COLLABORATION"]),
        databases=[],
        action="federated_compute",
    )
    if "id" not in task:
        sys.exit(f"the task was not created: {task}")
    return task["id"]


def wait(client, task_id: int, timeout: float, started: float) -> dict:
    """Waits until every run of the task has ended (or TIMEOUT); the
    task's summary. (The client's wait_for_results returns at the first
    failed run.)"""
    while True:
        runs = client.run.from_task(task_id)["data"]
        if runs and all(r.get("finished_at") for r in runs):
            break
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.5)
    seconds = time.monotonic() - started
    results = {r["id"]: r.get("result") for r in client.result.from_task(task_id)["data"]}
    out = []
    for run in runs:
        result = results.get(run["id"])
        try:
            parsed = json.loads(result) if result else None
        except ValueError:
            parsed = {"unparsed": result}
        out.append(
            {
                "organization": run["organization"]["id"],
                "status": run["status"],
                "finished": bool(run.get("finished_at")),
                "result": parsed,
                "log": run.get("log") or "",
            }
        )
    status = client.task.get(task_id).get("status")
    return {"task": task_id, "status": status, "seconds": seconds, "runs": out}


def main() -> None:
    client = login()
    command = sys.argv[1]
    started = time.monotonic()
    if command == "task":
        image, method, arguments = sys.argv[2:5]
        timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 180
        task_id = create(client, image, method, arguments)
        print(json.dumps(wait(client, task_id, timeout, started)))
    elif command == "create":
        print(create(client, *sys.argv[2:5]))
    elif command == "wait":
        print(json.dumps(wait(client, int(sys.argv[2]), float(sys.argv[3]), started)))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
