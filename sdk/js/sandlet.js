// sandlet's guest SDK for JavaScript algorithms.
//
// An algorithm is a module `algorithm.js` exporting `run(args)`: it takes
// the input (parsed JSON) and returns anything JSON can hold.
//
//   import { query, quote } from 'sandlet';
//   export function run(args) {
//     const table = query(`SELECT COUNT(age) FROM ${quote(args.dataset)}`);
//     return { count: table.rows[0][0] };
//   }
//
// Data comes only from `query`, which the host answers under the station's
// disclosure policy; a refusal is thrown as a `QueryError` (`NotGranted`,
// `Denied`, `Invalid`, `LimitExceeded`) whose message is `kind: detail`.
// Throw an `AlgorithmError` (or let a `QueryError` through) to end the run
// with that message as its error. Built with esbuild (SDK, entry and the
// algorithm in one module) and componentize-js; there is no network.

import * as data from 'sandlet:algorithm/data@0.1.0';

/** Ends the run with its message as the error. */
export class AlgorithmError extends Error {}

/** The host refused a query; `kind` is the WIT error's case name. */
export class QueryError extends AlgorithmError {
  constructor(kind, detail) {
    super(`${kind}: ${detail}`);
    this.kind = kind;
    this.detail = detail;
  }
}
export class NotGranted extends QueryError {}
export class Denied extends QueryError {}
export class Invalid extends QueryError {}
export class LimitExceeded extends QueryError {}

const KINDS = {
  'not-granted': NotGranted,
  denied: Denied,
  invalid: Invalid,
  'limit-exceeded': LimitExceeded,
};

// A WIT value as a JavaScript one. 64-bit integers arrive as BigInt; those
// a double holds exactly become numbers (JSON cannot write a BigInt).
function native(value) {
  switch (value.tag) {
    case 'null':
      return null;
    case 'int':
      return Number.isSafeInteger(Number(value.val)) ? Number(value.val) : value.val;
    default:
      return value.val;
  }
}

/** A query's answer: column names and rows of native values. */
export class Table {
  constructor(columns, rows) {
    this.columns = columns;
    this.rows = rows;
  }
  /** The rows as objects keyed by column name. */
  records() {
    return this.rows.map((row) => Object.fromEntries(this.columns.map((c, i) => [c, row[i]])));
  }
  /** One column's values, in row order. */
  column(name) {
    const index = this.columns.indexOf(name);
    if (index < 0) throw new AlgorithmError(`no column ${JSON.stringify(name)} in the answer`);
    return this.rows.map((row) => row[index]);
  }
}

/** Runs one SQL query on the granted datasets, or throws a QueryError. */
export function query(sql) {
  let table;
  try {
    table = data.query(sql);
  } catch (e) {
    const error = e.payload ?? e;
    const Kind = KINDS[error.tag] ?? QueryError;
    throw new Kind(error.tag ?? 'error', error.val ?? String(error));
  }
  return new Table(table.columns, table.rows.map((row) => row.map(native)));
}

/** The datasets granted to this run: name -> [[column, type], ...]. */
export function datasets() {
  return Object.fromEntries(
    data.datasets().map((d) => [d.name, d.columns.map((c) => [c.name, c.dataType])]),
  );
}

/** An SQL identifier in double quotes, taken literally whatever it holds. */
export function quote(identifier) {
  return '"' + identifier.replaceAll('"', '""') + '"';
}
