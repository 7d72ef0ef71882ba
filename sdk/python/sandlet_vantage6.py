"""vantage6's task contract for Python algorithms run on sandlet: what
vantage6's ``wrap_algorithm`` does in an algorithm image, for a wasm guest
(the same as the Rust crate ``sdk/vantage6``).

A vantage6 node (5.x) gives each task's container no arguments, only
environment variables whose values are base32 with each ``=`` written as
``!`` (``INPUT_FILE``, ``OUTPUT_FILE``, ``ALGORITHM_METHOD``,
``FUNCTION_ACTION``, ``TASK_ID``, ...), an input file holding the
researcher's JSON arguments, and an output file for the JSON result, which
the node sends on only if the run succeeds. An algorithm::

    import sandlet, sandlet_vantage6

    def partial(task):
        column = task.string("column")
        table = sandlet.query(f"SELECT SUM({sandlet.quote(column)}) ...")
        return {"sum": ..., "count": ...}

    def run(args):
        return sandlet_vantage6.run({"partial": partial})

Data still comes only from ``sandlet.query``, under the station's policy.
"""

import base64
import binascii
import json
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional

from sandlet import AlgorithmError


def decode(value: str) -> str:
    """One value as vantage6's node encodes it; a value that is not such
    an encoding (a token passed through a Secret, say) is returned as it
    is."""
    try:
        return base64.b32decode(value.replace("!", "=").encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return value


def encode(value: str) -> str:
    """A value encoded as vantage6's node does (for tests)."""
    return base64.b32encode(value.encode("utf-8")).decode("ascii").replace("=", "!")


class Task:
    """One task, as the node described it to the container."""

    def __init__(self, env: Mapping[str, str]):
        self.env = {key: decode(value) for key, value in env.items()}

        def required(name: str) -> str:
            value = self.env.get(name, "")
            if not value:
                raise AlgorithmError(
                    f"{name} is not set: is this container started by a vantage6 node?"
                )
            return value

        input_file = required("INPUT_FILE")
        try:
            with open(input_file, "rb") as f:
                arguments = json.loads(f.read())
        except OSError as e:
            raise AlgorithmError(f"cannot read the input file {input_file}: {e}")
        except ValueError as e:
            raise AlgorithmError(f"the input file {input_file} is not JSON: {e}")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise AlgorithmError(
                f"the input file {input_file} holds {json.dumps(arguments)}, "
                "not a JSON object of arguments"
            )
        self.arguments: Dict[str, Any] = arguments
        self.method = required("ALGORITHM_METHOD")
        self.action = self.env.get("FUNCTION_ACTION", "")
        self.output_file = required("OUTPUT_FILE")

    def string(self, name: str) -> str:
        """A string argument."""
        if name not in self.arguments:
            raise AlgorithmError(f'argument "{name}" is missing')
        value = self.arguments[name]
        if not isinstance(value, str):
            raise AlgorithmError(
                f'argument "{name}" must be a string, not {json.dumps(value)}'
            )
        return value

    def optional_string(self, name: str) -> Optional[str]:
        """An optional string argument."""
        if self.arguments.get(name) is None:
            return None
        return self.string(name)

    def dataframes(self) -> List[List[str]]:
        """The dataframes asked for, by position (``USER_REQUESTED_DATAFRAMES``)."""
        value = self.env.get("USER_REQUESTED_DATAFRAMES", "")
        return [group.split(",") for group in value.split(";") if group]

    def write_output(self, output: Any) -> None:
        """Writes the task's result (JSON, replacing the file)."""
        try:
            data = json.dumps(output, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise AlgorithmError(f"the result is not JSON: {e}")
        try:
            with open(self.output_file, "wb") as f:
                f.write(data)
        except OSError as e:
            raise AlgorithmError(f"cannot write the output file {self.output_file}: {e}")


Method = Callable[[Task], Any]


def run_task(task: Task, methods: Mapping[str, Method]) -> Any:
    """Runs ``task`` with the method it names and writes its output."""
    method = methods.get(task.method)
    if method is None:
        raise AlgorithmError(
            f'this algorithm has no method "{task.method}" (it has {", ".join(methods)})'
        )
    print(
        f"info > running {task.method} ({task.action}) of task {task.env.get('TASK_ID', '?')}"
    )
    output = method(task)
    task.write_output(output)
    return output


def run(methods: Mapping[str, Method], env: Optional[Mapping[str, str]] = None) -> Any:
    """Runs this container's task: reads the environment and the input,
    calls the method the task names, writes the output and returns it.
    A failure is printed to stderr (the run's log) and raised, which ends
    the run failed: the node then reports it crashed."""
    try:
        output = run_task(Task(os.environ if env is None else env), methods)
    except AlgorithmError as e:
        print(f"error > {e}", file=sys.stderr)
        raise
    print(f"info > done: {json.dumps(output)}")
    return output
