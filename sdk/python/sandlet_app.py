"""The component's entry (componentize-py's app): JSON in, the author's
``algorithm.run``, JSON out. Errors become the run's ``err``."""

import json

import wit_world
from componentize_py_types import Err

import algorithm
import sandlet


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> str:
        try:
            args = json.loads(input)
        except ValueError as e:
            raise Err(f"invalid input: not JSON: {e}")
        try:
            result = algorithm.run(args)
        except sandlet.AlgorithmError as e:
            raise Err(str(e))
        try:
            # NaN and infinity are not JSON: an error, not a token other
            # parsers refuse.
            return json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise Err(f"the result is not JSON: {e}")
