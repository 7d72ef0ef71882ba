// {{name}}: a sandlet algorithm.
//
// Input: {"dataset": "example", "column": "value"}.
// Output: {"dataset": ..., "column": ..., "count": N, "mean": M} from one
// aggregate query, which the data station answers under its disclosure
// policy (a refusal is thrown as a QueryError: NotGranted, Denied, ...).
import { AlgorithmError, query, quote } from 'sandlet';

export function run(args) {
  const keys = Object.keys(args ?? {}).sort().join(',');
  if (keys !== 'column,dataset' || typeof args.dataset !== 'string' || typeof args.column !== 'string') {
    throw new AlgorithmError('invalid input: expected {"dataset": NAME, "column": NAME}');
  }
  const { dataset, column } = args;
  const c = quote(column);
  const [count, mean] = query(`SELECT COUNT(${c}), AVG(${c}) FROM ${quote(dataset)}`).rows[0];
  return { dataset, column, count, mean };
}
