// federated-mean in JavaScript: the partial step at each station and the
// central step. Same input and output as the Rust version
// (algorithms/federated-mean).
import { AlgorithmError, query, quote } from 'sandlet';

function partial(dataset, column) {
  const c = quote(column);
  const [sum, count] = query(`SELECT SUM(${c}) AS s, COUNT(${c}) AS n FROM ${quote(dataset)}`).rows[0];
  return { sum: Number(sum ?? 0), count };
}

function combine(partials) {
  const sum = partials.reduce((s, p) => s + Number(p.sum), 0);
  const count = partials.reduce((n, p) => n + Number(p.count), 0);
  if (count === 0) throw new AlgorithmError('no values at any station: the mean is undefined');
  return { mean: sum / count, sum, count };
}

export function run(args) {
  const keys = Object.keys(args ?? {}).sort().join(',');
  if (keys === 'column,dataset') return partial(args.dataset, args.column);
  if (keys === 'combine' && Array.isArray(args.combine)) return combine(args.combine);
  throw new AlgorithmError('invalid input: expected {"dataset", "column"} or {"combine": [...]}');
}
