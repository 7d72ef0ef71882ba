// The component's export: JSON in, the author's `run`, JSON out. A thrown
// error becomes the run's `err` (its message only).
import { run as algorithm } from 'algorithm';
import { AlgorithmError } from 'sandlet';

export function run(input) {
  let args;
  try {
    args = JSON.parse(input);
  } catch (e) {
    throw `invalid input: not JSON: ${e.message}`;
  }
  let result;
  try {
    result = algorithm(args);
  } catch (e) {
    throw e instanceof AlgorithmError ? e.message : `the algorithm failed: ${e}`;
  }
  const text = JSON.stringify(result);
  if (text === undefined) throw 'the result is not JSON';
  return text;
}
