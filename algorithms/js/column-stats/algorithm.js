// column-stats in JavaScript: count, mean and sample variance of one
// numeric column, over the whole dataset or per group. Same input and
// output as the Rust version (algorithms/column-stats). The numbers come
// from one aggregate query; the algorithm never sees a row.
import { AlgorithmError, query, quote } from 'sandlet';

const number = (v) => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null);

export function run(args) {
  const keys = Object.keys(args ?? {});
  if (
    keys.some((k) => !['dataset', 'column', 'group_by'].includes(k)) ||
    typeof args.dataset !== 'string' ||
    typeof args.column !== 'string'
  ) {
    throw new AlgorithmError(
      'invalid input: expected {"dataset": NAME, "column": NAME} and optionally "group_by"',
    );
  }
  const { dataset, column, group_by: groupBy } = args;
  const c = quote(column);
  const stats = `COUNT(${c}), AVG(${c}), VAR_SAMP(${c})`;
  if (groupBy === undefined || groupBy === null) {
    const [count, mean, variance] = query(`SELECT ${stats} FROM ${quote(dataset)}`).rows[0];
    return { dataset, column, count, mean: number(mean), variance: number(variance) };
  }
  const key = quote(groupBy);
  const table = query(`SELECT ${key}, ${stats} FROM ${quote(dataset)} GROUP BY ${key} ORDER BY ${key}`);
  const groups = table.rows.map(([k, count, mean, variance]) => ({
    key: k,
    count,
    mean: number(mean),
    variance: number(variance),
  }));
  return { dataset, column, group_by: groupBy, groups };
}
