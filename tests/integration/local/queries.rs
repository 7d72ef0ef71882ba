//! Disclosure control, table-driven: the same hostile and legitimate
//! queries against the same data held as CSV and as Parquet (as PostgreSQL
//! tables in `services::queries`), each with its exact expected answer.
//!
//! The data is built so that the thresholds bite in known places: every
//! age occurs exactly 4 times (below `minGroupSize` 5), the site "west" has
//! 3 patients, and ages 20-21 hold 8 rows (a group big enough, but below
//! `minRows` 10).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use sandlet_data::{DataAccess, GrantedDatasets, QueryError, Value};
use sandlet_station::StationConfig;

pub(crate) const PATIENTS: usize = 240;
pub(crate) const LABS: usize = 90;
const SITES: [&str; 3] = ["north", "east", "south"];

pub(crate) struct Patient {
    pub age: i64,
    pub sex: &'static str,
    pub bmi: f64,
    pub outcome: i64,
    pub site: &'static str,
}

pub(crate) fn patient(i: usize) -> Patient {
    Patient {
        age: 20 + (i % 60) as i64,
        sex: if i.is_multiple_of(3) { "m" } else { "f" },
        bmi: (1800 + (i * 37) % 1500) as f64 / 100.0,
        outcome: i64::from((i / 7).is_multiple_of(2)),
        site: if i < 3 { "west" } else { SITES[(i / 2) % 3] },
    }
}

pub(crate) struct Lab {
    pub site: &'static str,
    pub kind: &'static str,
    pub value: f64,
}

pub(crate) fn lab(i: usize) -> Lab {
    Lab {
        site: SITES[i % 3],
        kind: if i.is_multiple_of(2) { "hb" } else { "crp" },
        value: (100 + (i * 13) % 90) as f64 / 10.0,
    }
}

/// Writes patients.csv, labs.csv and secret.csv into `dir`.
pub(crate) fn write_csv(dir: &Path) {
    let mut text = String::from("id,name,age,sex,bmi,outcome,site\n");
    for i in 0..PATIENTS {
        let p = patient(i);
        writeln!(
            text,
            "{},person{i},{},{},{:.2},{},{}",
            1000 + i,
            p.age,
            p.sex,
            p.bmi,
            p.outcome,
            p.site
        )
        .unwrap();
    }
    std::fs::write(dir.join("patients.csv"), text).unwrap();
    let mut text = String::from("site,kind,value\n");
    for i in 0..LABS {
        let l = lab(i);
        writeln!(text, "{},{},{:.1}", l.site, l.kind, l.value).unwrap();
    }
    std::fs::write(dir.join("labs.csv"), text).unwrap();
    std::fs::write(dir.join("secret.csv"), "code\n1\n2\n").unwrap();
}

/// Converts each CSV in `dir` to Parquet with DataFusion.
pub(crate) async fn write_parquet(dir: &Path) {
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::prelude::{CsvReadOptions, SessionContext};
    let ctx = SessionContext::new();
    for name in ["patients", "labs", "secret"] {
        let frame = ctx
            .read_csv(
                dir.join(format!("{name}.csv")).to_str().unwrap(),
                CsvReadOptions::new(),
            )
            .await
            .unwrap();
        frame
            .write_parquet(
                dir.join(format!("{name}.parquet")).to_str().unwrap(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .unwrap();
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    Csv,
    Parquet,
    Postgres,
}

const POLICY: &str = "
    policy:
      allowedColumns: [age, sex, bmi, outcome, site]
      minGroupSize: 5
      minRows: 10
      maxResultRows: 20";

pub(crate) fn config_text(dir: &Path, source: Source, url: Option<&str>) -> String {
    let source_of = |name: &str| match source {
        Source::Csv => format!("{{ csv: {}/{name}.csv }}", dir.display()),
        Source::Parquet => format!("{{ parquet: {}/{name}.parquet }}", dir.display()),
        Source::Postgres => format!(
            "{{ postgres: {{ url: \"{}\", table: {name} }} }}",
            url.unwrap()
        ),
    };
    format!(
        "datasets:\n  - name: patients\n    source: {}{POLICY}\n  - name: labs\n    source: {}\n  - name: secret\n    source: {}\n",
        source_of("patients"),
        source_of("labs"),
        source_of("secret"),
    )
}

/// What a query must answer.
enum Expect {
    Rows(Vec<Vec<Value>>),
    Error(QueryError),
    /// `invalid`, with a message containing this text.
    InvalidContaining(&'static str),
}

pub(crate) fn int(i: i64) -> Value {
    Value::Int(i)
}
fn float(x: f64) -> Value {
    Value::Float(x)
}
fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn not_granted() -> Expect {
    Expect::Error(QueryError::NotGranted(
        "the query names a table or column that is not granted to this run".to_owned(),
    ))
}
fn not_select(kind: &str) -> Expect {
    Expect::Error(QueryError::Denied(format!(
        "only SELECT queries are allowed, not {kind}"
    )))
}
const SAFE_LIST: &str =
    "COUNT, COUNT(DISTINCT), SUM, AVG, VAR_SAMP, VAR_POP, STDDEV_SAMP, STDDEV_POP";
fn row_level(datasets: &str) -> Expect {
    Expect::Error(QueryError::Denied(format!(
        "aggregatesOnly: this query returns row-level values of {datasets}; every output \
         column must be a GROUP BY key or an aggregate ({SAFE_LIST})"
    )))
}
fn unsafe_aggregate(function: &str) -> Expect {
    Expect::Error(QueryError::Denied(format!(
        "aggregatesOnly: {function} can return an individual's value and may not read rows \
         of patients; the disclosure-safe aggregates are {SAFE_LIST}"
    )))
}
fn window() -> Expect {
    Expect::Error(QueryError::Denied(
        "aggregatesOnly: window functions may not read rows of patients".to_owned(),
    ))
}
fn small_group(datasets: &str) -> Expect {
    Expect::Error(QueryError::Denied(format!(
        "minGroupSize: every group an aggregate makes must summarise at least 5 rows of \
         {datasets}, and a group of this query summarises fewer"
    )))
}
fn thin_value() -> Expect {
    thin_value_of("patients")
}
fn thin_value_of(datasets: &str) -> Expect {
    Expect::Error(QueryError::Denied(format!(
        "minGroupSize: every aggregate value must be computed from at least 5 rows of \
         {datasets}, and a value of this query is computed from fewer (a FILTER or CASE that \
         selects few rows)"
    )))
}
fn few_rows() -> Expect {
    Expect::Error(QueryError::Denied(
        "minRows: an aggregate must read at least 10 rows of patients after filtering, and \
         an aggregate of this query reads fewer"
            .to_owned(),
    ))
}
fn top_k(datasets: &str) -> Expect {
    Expect::Error(QueryError::Denied(format!(
        "aggregatesOnly: LIMIT and OFFSET may not choose individual rows of {datasets} \
         (ORDER BY ... LIMIT picks rows by their values); aggregate first and limit the groups"
    )))
}
fn uncounted_rows(datasets: &str) -> Expect {
    Expect::Error(QueryError::Denied(format!(
        "aggregatesOnly: which rows an aggregate of this query reads depends on individual \
         rows of {datasets} that it cannot count (a row-level EXISTS, IN, INTERSECT, EXCEPT, \
         semi-join or scalar subquery); aggregate those rows first (GROUP BY) or join them"
    )))
}
fn too_many_rows() -> Expect {
    Expect::Error(QueryError::LimitExceeded(
        "maxResultRows: the result has more than 20 rows".to_owned(),
    ))
}
fn failed_while_running() -> Expect {
    Expect::Error(QueryError::Invalid(
        "the query failed while reading the data or computing over it (the station's log \
         has the details)"
            .to_owned(),
    ))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len() as f64
}

/// Every case: (SQL, expected answer).
fn cases() -> Vec<(&'static str, Expect)> {
    let patients: Vec<Patient> = (0..PATIENTS).map(patient).collect();
    let labs: Vec<Lab> = (0..LABS).map(lab).collect();
    let count = |f: &dyn Fn(&Patient) -> bool| patients.iter().filter(|p| f(p)).count() as i64;
    let bmi_mean =
        |f: &dyn Fn(&Patient) -> bool| mean(patients.iter().filter(|p| f(p)).map(|p| p.bmi));
    let all_bmi = mean(patients.iter().map(|p| p.bmi));
    let bmi_var_pop = patients
        .iter()
        .map(|p| (p.bmi - all_bmi).powi(2))
        .sum::<f64>()
        / PATIENTS as f64;
    let bmi_stddev = (patients
        .iter()
        .map(|p| (p.bmi - all_bmi).powi(2))
        .sum::<f64>()
        / (PATIENTS - 1) as f64)
        .sqrt();
    let labs_at = |site: &str| labs.iter().filter(|l| l.site == site).count() as i64;
    let bmi_total: f64 = patients.iter().map(|p| p.bmi).sum();
    // Sites other than 'west' by their number of patients, largest first.
    let mut top_sites: Vec<Vec<Value>> = SITES
        .iter()
        .map(|&s| vec![text(s), int(count(&|p| p.site == s))])
        .collect();
    top_sites.sort_by(|a, b| match (&a[..], &b[..]) {
        ([Value::Text(sa), Value::Int(na)], [Value::Text(sb), Value::Int(nb)]) => {
            nb.cmp(na).then(sa.cmp(sb))
        }
        _ => std::cmp::Ordering::Equal,
    });
    let top_two = match (&top_sites[0][1], &top_sites[1][1]) {
        (Value::Int(a), Value::Int(b)) => a + b,
        _ => unreachable!("counts are integers"),
    };
    let join_count = |sex: &str| {
        patients
            .iter()
            .filter(|p| p.sex == sex)
            .map(|p| labs_at(p.site))
            .sum::<i64>()
    };

    vec![
        // --- Hidden and missing columns: the same not-granted answer however they are spelt.
        ("SELECT COUNT(name) FROM patients", not_granted()),
        ("SELECT COUNT(\"name\") FROM patients", not_granted()),
        ("SELECT COUNT(NAME) FROM patients", not_granted()),
        ("SELECT COUNT(\"NAME\") FROM patients", not_granted()),
        ("SELECT COUNT(p.id) FROM patients p", not_granted()),
        ("SELECT COUNT(patients.id) FROM patients", not_granted()),
        (
            "SELECT COUNT(*) FROM patients WHERE id = 1007",
            not_granted(),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex, name",
            not_granted(),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex HAVING SUM(id) > 0",
            not_granted(),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex ORDER BY SUM(id)",
            not_granted(),
        ),
        (
            "SELECT COUNT(*) FROM (SELECT id FROM patients) t",
            not_granted(),
        ),
        (
            "SELECT COUNT(x) FROM (SELECT name AS x FROM patients) t",
            not_granted(),
        ),
        (
            "WITH t AS (SELECT id FROM patients) SELECT COUNT(*) FROM t",
            not_granted(),
        ),
        (
            "SELECT COUNT(*) FROM patients a JOIN patients b ON a.id = b.id",
            not_granted(),
        ),
        (
            "SELECT COUNT(*) FROM patients a JOIN patients b USING (id)",
            not_granted(),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE EXISTS (SELECT 1 FROM patients q WHERE q.id = 1)",
            not_granted(),
        ),
        ("SELECT COUNT(ssn) FROM patients", not_granted()),
        // --- Tables that are not granted, do not exist, or are not tables.
        ("SELECT COUNT(*) FROM secret", not_granted()),
        ("SELECT COUNT(*) FROM nosuch", not_granted()),
        ("SELECT COUNT(*) FROM \"Patients\"", not_granted()),
        (
            "SELECT COUNT(*) FROM information_schema.tables",
            not_granted(),
        ),
        (
            "SELECT COUNT(*) FROM information_schema.columns",
            not_granted(),
        ),
        (
            "SELECT COUNT(*) FROM datafusion.information_schema.df_settings",
            not_granted(),
        ),
        ("SELECT COUNT(*) FROM pg_catalog.pg_tables", not_granted()),
        ("SELECT COUNT(*) FROM '/etc/passwd'", not_granted()),
        ("SELECT COUNT(*) FROM 'file:///etc/passwd'", not_granted()),
        ("SELECT * FROM generate_series(1, 10)", not_granted()),
        ("SELECT * FROM range(10)", not_granted()),
        ("SELECT COUNT(*) FROM secret.patients", not_granted()),
        // --- Only queries.
        ("SHOW TABLES", not_select("SHOW")),
        ("SHOW COLUMNS FROM patients", not_select("SHOW")),
        ("DESCRIBE patients", not_select("DESCRIBE")),
        (
            "INSERT INTO patients VALUES (1, 'f', 20.0, 0, 'north')",
            not_select("INSERT"),
        ),
        ("UPDATE patients SET age = 1", not_select("UPDATE")),
        ("DELETE FROM patients", not_select("DELETE")),
        ("DROP TABLE patients", not_select("DROP")),
        ("CREATE TABLE t AS SELECT 1", not_select("CREATE")),
        (
            "CREATE VIEW v AS SELECT age FROM patients",
            not_select("CREATE"),
        ),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            not_select("CREATE"),
        ),
        (
            "COPY patients TO '/tmp/sandlet-leak.csv'",
            not_select("COPY"),
        ),
        ("SET datafusion.execution.batch_size = 1", not_select("SET")),
        ("RESET datafusion.execution.batch_size", not_select("RESET")),
        (
            "EXPLAIN SELECT COUNT(*) FROM patients",
            not_select("EXPLAIN"),
        ),
        (
            "EXPLAIN ANALYZE SELECT COUNT(*) FROM patients",
            not_select("EXPLAIN"),
        ),
        (
            "PREPARE q AS SELECT COUNT(*) FROM patients",
            not_select("PREPARE"),
        ),
        ("BEGIN", not_select("BEGIN")),
        (
            "SELECT age INTO leaked FROM patients",
            Expect::Error(QueryError::Denied(
                "only SELECT queries are allowed, not CREATE or DROP".to_owned(),
            )),
        ),
        (
            "SELECT 1; DROP TABLE patients",
            Expect::InvalidContaining("single SQL statement"),
        ),
        // --- Row-level values may not leave the query.
        ("SELECT age FROM patients", row_level("patients")),
        ("SELECT * FROM patients", row_level("patients")),
        ("SELECT patients.* FROM patients LIMIT 1", top_k("patients")),
        ("SELECT age FROM patients LIMIT 1", top_k("patients")),
        (
            "SELECT 1 FROM patients WHERE age = 40",
            row_level("patients"),
        ),
        (
            "SELECT age + 0 AS a FROM patients ORDER BY a DESC LIMIT 1",
            top_k("patients"),
        ),
        (
            "SELECT age FROM patients UNION ALL SELECT COUNT(*) FROM patients",
            row_level("patients"),
        ),
        (
            "SELECT (SELECT age FROM patients LIMIT 1)",
            top_k("patients"),
        ),
        (
            "SELECT COUNT(*), (SELECT age FROM patients LIMIT 1) FROM patients",
            top_k("patients"),
        ),
        (
            "SELECT a.n FROM (SELECT COUNT(*) AS n FROM patients) a JOIN patients p ON p.age > 70",
            row_level("patients"),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex HAVING (SELECT age FROM patients LIMIT 1) > 30",
            top_k("patients"),
        ),
        (
            "WITH t AS (SELECT age FROM patients) SELECT * FROM t",
            row_level("patients"),
        ),
        (
            "SELECT site FROM patients INTERSECT SELECT site FROM labs",
            row_level("labs"),
        ),
        (
            "SELECT sex FROM patients WHERE sex IN (SELECT sex FROM patients GROUP BY sex)",
            row_level("patients"),
        ),
        // --- Aggregates that return an individual's value.
        ("SELECT MAX(age) FROM patients", unsafe_aggregate("MAX")),
        ("SELECT MIN(bmi) FROM patients", unsafe_aggregate("MIN")),
        (
            "SELECT MEDIAN(age) FROM patients",
            unsafe_aggregate("MEDIAN"),
        ),
        (
            "SELECT approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY age) FROM patients",
            unsafe_aggregate("APPROX_PERCENTILE_CONT"),
        ),
        (
            "SELECT FIRST_VALUE(age) FROM patients",
            unsafe_aggregate("FIRST_VALUE"),
        ),
        (
            "SELECT LAST_VALUE(age) FROM patients",
            unsafe_aggregate("LAST_VALUE"),
        ),
        (
            "SELECT ARRAY_AGG(age) FROM patients",
            unsafe_aggregate("ARRAY_AGG"),
        ),
        (
            "SELECT STRING_AGG(sex, ',') FROM patients",
            unsafe_aggregate("STRING_AGG"),
        ),
        (
            "SELECT BIT_OR(age) FROM patients",
            unsafe_aggregate("BIT_OR"),
        ),
        (
            "SELECT APPROX_DISTINCT(age) FROM patients",
            unsafe_aggregate("APPROX_DISTINCT"),
        ),
        (
            "SELECT COUNT(*) FROM (SELECT sex, MAX(age) AS m FROM patients GROUP BY sex) t",
            unsafe_aggregate("MAX"),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex ORDER BY MAX(age)",
            unsafe_aggregate("MAX"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE age = (SELECT MAX(age) FROM patients)",
            unsafe_aggregate("MAX"),
        ),
        (
            "SELECT SUM(DISTINCT age) FROM patients",
            Expect::Error(QueryError::Denied(
                "aggregatesOnly: DISTINCT is allowed only in COUNT(DISTINCT ...), not in SUM"
                    .to_owned(),
            )),
        ),
        // --- Window functions over rows.
        ("SELECT ROW_NUMBER() OVER () FROM patients", window()),
        (
            "SELECT LAG(age) OVER (ORDER BY age) FROM patients",
            window(),
        ),
        ("SELECT SUM(age) OVER () FROM patients", window()),
        (
            "SELECT COUNT(*) FROM (SELECT age, RANK() OVER (ORDER BY age) AS r FROM patients) t WHERE r = 1",
            window(),
        ),
        // --- Thresholds, checked while the query runs.
        (
            "SELECT age, COUNT(*) FROM patients GROUP BY age",
            small_group("patients"),
        ),
        (
            "SELECT site, COUNT(*) FROM patients GROUP BY site",
            small_group("patients"),
        ),
        (
            "SELECT DISTINCT site FROM patients",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE site = 'west'",
            small_group("patients"),
        ),
        (
            "SELECT AVG(bmi) FROM patients WHERE age = 33",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE age < 20",
            small_group("patients"),
        ),
        (
            "SELECT age FROM patients UNION SELECT 1",
            small_group("patients"),
        ),
        (
            "SELECT age, COUNT(*) FROM patients GROUP BY age HAVING COUNT(*) >= 5",
            small_group("patients"),
        ),
        (
            "SELECT n FROM (SELECT site, COUNT(*) AS n FROM patients GROUP BY site) t WHERE site <> 'west'",
            small_group("patients"),
        ),
        // --- Thresholds count source rows, not the rows a join or union makes.
        (
            "SELECT AVG(a.bmi) FROM patients a JOIN patients b ON true WHERE a.site = 'west'",
            small_group("patients"),
        ),
        (
            "SELECT AVG(a.bmi + 0 * b.bmi) FROM patients a, patients b WHERE a.site = 'west'",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients p, (VALUES (1),(2),(3),(4),(5),(6),(7),(8),(9),(10)) v(x) WHERE p.site = 'west'",
            small_group("patients"),
        ),
        (
            "SELECT k, COUNT(*) FROM (SELECT site AS k FROM patients WHERE site = 'west' UNION ALL SELECT 'west' FROM (VALUES (1),(2),(3),(4),(5)) v(x)) t GROUP BY k",
            small_group("patients"),
        ),
        (
            "SELECT AVG(m) FROM (SELECT b.age, AVG(a.bmi) AS m FROM patients a JOIN patients b ON true WHERE a.site = 'west' GROUP BY b.age) t",
            small_group("patients"),
        ),
        (
            "SELECT SUM(n) FROM (SELECT site, COUNT(*) AS n FROM patients WHERE site = 'west' GROUP BY ROLLUP(site, sex, age, outcome, bmi)) t",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients a JOIN patients b ON a.age = b.age WHERE a.age BETWEEN 20 AND 21",
            few_rows(),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE age BETWEEN 20 AND 21",
            few_rows(),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients WHERE age > 200 GROUP BY sex",
            few_rows(),
        ),
        (
            "SELECT SUM(bmi) FILTER (WHERE site = 'west') FROM patients",
            thin_value(),
        ),
        (
            "SELECT AVG(CASE WHEN site = 'west' THEN bmi END) FROM patients",
            thin_value(),
        ),
        (
            "SELECT COUNT(CASE WHEN site = 'west' THEN 1 END) FROM patients",
            thin_value(),
        ),
        (
            "SELECT COUNT(*) FILTER (WHERE site = 'west') FROM patients",
            thin_value(),
        ),
        // --- Aggregates that do not reach the output are guarded too: in
        // WHERE, HAVING, join conditions, EXISTS / IN, CASE, at any depth,
        // correlated or not, as subquery or CTE. ('west' has 3 patients,
        // each age 4, labs with value > 18.5 are 4.)
        (
            "SELECT COUNT(*) FROM patients WHERE bmi > (SELECT AVG(bmi) FROM patients WHERE site = 'west')",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE (SELECT AVG(bmi) FROM patients WHERE site = 'west') > 20",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE EXISTS (SELECT 1 FROM patients q WHERE q.site = 'west' GROUP BY q.site HAVING AVG(q.bmi) > 20)",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE sex IN (SELECT sex FROM patients WHERE site = 'west' GROUP BY sex HAVING AVG(bmi) > 20)",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients p JOIN (SELECT AVG(bmi) AS m FROM patients WHERE site = 'west') w ON p.bmi > w.m",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM (SELECT AVG(bmi) AS m FROM patients WHERE site = 'west') w JOIN patients p ON p.bmi > w.m",
            small_group("patients"),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex HAVING AVG(bmi) > (SELECT AVG(bmi) FROM patients WHERE site = 'west')",
            small_group("patients"),
        ),
        (
            "WITH w AS (SELECT AVG(bmi) AS m FROM patients WHERE site = 'west') SELECT COUNT(*) FROM patients WHERE bmi > (SELECT m FROM w)",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE bmi > (SELECT AVG(bmi) FROM patients WHERE age > (SELECT AVG(age) FROM patients WHERE site = 'west'))",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients p WHERE p.bmi > (SELECT AVG(q.bmi) FROM patients q WHERE q.age = p.age)",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE CASE WHEN (SELECT AVG(bmi) FROM patients WHERE site = 'west') > 20 THEN true ELSE false END",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM labs l WHERE l.value > (SELECT AVG(bmi) FROM patients WHERE site = 'west')",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE bmi > (SELECT AVG(value) FROM labs WHERE value > 18.5)",
            small_group("labs"),
        ),
        (
            "SELECT AVG(n) FROM (SELECT age, COUNT(*) AS n FROM patients GROUP BY age) t",
            small_group("patients"),
        ),
        (
            "SELECT COUNT(*) FROM (SELECT age, AVG(bmi) AS m FROM patients GROUP BY age) t WHERE m > 25",
            small_group("patients"),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex ORDER BY CASE WHEN (SELECT AVG(bmi) FROM patients WHERE site = 'west') > 20 THEN sex END",
            small_group("patients"),
        ),
        // A subquery as LIMIT or OFFSET is refused by DataFusion itself.
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex LIMIT (SELECT COUNT(*) FROM patients WHERE site = 'west')",
            Expect::InvalidContaining("Unsupported LIMIT expression"),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex LIMIT 1 OFFSET (SELECT COUNT(*) FROM patients WHERE site = 'west')",
            Expect::InvalidContaining("Unsupported OFFSET expression"),
        ),
        // The station's own column names cannot be borrowed to pass for row ids.
        (
            "SELECT COUNT(*) FROM (SELECT a.bmi AS __sandlet_rid_0 FROM patients a JOIN patients b ON true WHERE a.site = 'west') t",
            Expect::InvalidContaining("reserved for the station"),
        ),
        // --- Row-level rows that choose which rows an aggregate reads, which
        // it cannot count: semi-, anti- and mark joins on raw rows.
        (
            "SELECT COUNT(*) FROM patients WHERE EXISTS (SELECT 1 FROM patients q WHERE q.site = 'west' AND q.bmi > 20)",
            uncounted_rows("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE NOT EXISTS (SELECT 1 FROM patients q WHERE q.site = 'west' AND q.bmi > 30)",
            uncounted_rows("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE sex IN (SELECT sex FROM patients q WHERE q.site = 'west')",
            uncounted_rows("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE age > 100 OR EXISTS (SELECT 1 FROM patients q WHERE q.site = 'west' AND q.bmi > 20)",
            uncounted_rows("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients p WHERE EXISTS (SELECT 1 FROM labs l WHERE l.site = p.site AND l.value > 18.5)",
            uncounted_rows("labs"),
        ),
        (
            "SELECT COUNT(*) FROM (SELECT sex FROM patients INTERSECT SELECT sex FROM patients WHERE site = 'west') t",
            uncounted_rows("patients"),
        ),
        // --- Choosing individual rows by their values before an aggregate:
        // top-k, DISTINCT ON, row numbers, a LIMIT inside IN.
        (
            "SELECT SUM(bmi) FROM (SELECT bmi FROM patients ORDER BY bmi DESC LIMIT 11) t",
            top_k("patients"),
        ),
        (
            "SELECT AVG(bmi) FROM (SELECT bmi FROM patients ORDER BY bmi LIMIT 10 OFFSET 1) t",
            top_k("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE bmi IN (SELECT bmi FROM patients ORDER BY bmi DESC LIMIT 1)",
            top_k("patients"),
        ),
        (
            "WITH top AS (SELECT bmi, age FROM patients ORDER BY bmi DESC LIMIT 20) SELECT COUNT(*), SUM(bmi) FROM top",
            top_k("patients"),
        ),
        (
            "SELECT COUNT(*) FROM patients p JOIN (SELECT age FROM patients ORDER BY bmi DESC LIMIT 1) t ON p.age = t.age",
            top_k("patients"),
        ),
        (
            "SELECT SUM(value) FROM (SELECT value FROM labs ORDER BY value DESC LIMIT 11) t",
            top_k("labs"),
        ),
        (
            "SELECT COUNT(*) FROM (SELECT DISTINCT ON (sex) sex, bmi FROM patients ORDER BY sex, bmi DESC) t",
            Expect::Error(QueryError::Denied(
                "aggregatesOnly: DISTINCT ON may not read rows of patients".to_owned(),
            )),
        ),
        (
            "SELECT SUM(bmi) FROM (SELECT bmi, ROW_NUMBER() OVER (ORDER BY bmi DESC) AS r FROM patients) t WHERE r <= 11",
            window(),
        ),
        // --- CASE / COALESCE that choose between a row's value and a
        // constant count only the rows that take the value.
        (
            "SELECT SUM(CASE WHEN site = 'west' THEN bmi ELSE 0 END) FROM patients",
            thin_value(),
        ),
        (
            "SELECT AVG(CASE WHEN site = 'west' THEN bmi ELSE 0.0 END) FROM patients",
            thin_value(),
        ),
        (
            "SELECT SUM(CASE WHEN site <> 'west' THEN 0 ELSE bmi END) FROM patients",
            thin_value(),
        ),
        (
            "SELECT SUM(CASE site WHEN 'west' THEN bmi ELSE 1 END) FROM patients",
            thin_value(),
        ),
        (
            "SELECT SUM(CASE WHEN sex = 'f' THEN CASE WHEN site = 'west' THEN bmi ELSE 0 END ELSE 0 END) FROM patients",
            thin_value(),
        ),
        (
            "SELECT SUM(COALESCE(CASE WHEN site = 'west' THEN bmi END, 0)) FROM patients",
            thin_value(),
        ),
        (
            "SELECT STDDEV(CAST(CASE WHEN site = 'west' THEN bmi ELSE 0 END AS DOUBLE)) FROM patients",
            thin_value(),
        ),
        (
            "SELECT SUM(CASE WHEN a.site = 'west' THEN a.bmi ELSE 0 END) FROM patients a JOIN labs l ON l.kind = 'hb'",
            thin_value_of("patients and labs"),
        ),
        // --- What thresholds do not stop (README): the attacker's exact gain,
        // pinned so that any change is noticed. Person 0 is the only
        // 20-year-old in 'west'.
        // Arithmetic that zeroes every other row: person 0's bmi.
        (
            "SELECT SUM(bmi * CASE WHEN site = 'west' AND age = 20 THEN 1 ELSE 0 END) FROM patients",
            Expect::Rows(vec![vec![float(patients[0].bmi)]]),
        ),
        // A complement FILTER beside the whole: the difference is person 0's bmi.
        (
            "SELECT SUM(bmi), SUM(bmi) FILTER (WHERE NOT (site = 'west' AND age = 20)) FROM patients",
            Expect::Rows(vec![vec![
                float(bmi_total),
                float(bmi_total - patients[0].bmi),
            ]]),
        ),
        // A join that repeats one row: the sum minus the plain sum is its bmi.
        (
            "SELECT SUM(p.bmi) FROM patients p JOIN (VALUES (1), (2)) v(k) ON v.k = 1 OR (p.site = 'west' AND p.age = 20)",
            Expect::Rows(vec![vec![float(bmi_total + patients[0].bmi)]]),
        ),
        // Differencing two allowed queries.
        (
            "SELECT SUM(bmi) FROM patients WHERE NOT (site = 'west' AND age = 20)",
            Expect::Rows(vec![vec![float(bmi_total - patients[0].bmi)]]),
        ),
        (
            "SELECT SUM(bmi) FROM patients",
            Expect::Rows(vec![vec![float(bmi_total)]]),
        ),
        // --- Legitimate analyses with subqueries and sorts.
        (
            "SELECT AVG(m) FROM (SELECT sex, AVG(bmi) AS m FROM patients GROUP BY sex) t",
            Expect::Rows(vec![vec![float(
                (bmi_mean(&|p| p.sex == "f") + bmi_mean(&|p| p.sex == "m")) / 2.0,
            )]]),
        ),
        (
            "WITH s AS (SELECT sex, AVG(bmi) AS m FROM patients GROUP BY sex) SELECT COUNT(*), AVG(m) FROM s",
            Expect::Rows(vec![vec![
                int(2),
                float((bmi_mean(&|p| p.sex == "f") + bmi_mean(&|p| p.sex == "m")) / 2.0),
            ]]),
        ),
        (
            "SELECT site, COUNT(*) AS n FROM patients WHERE site <> 'west' GROUP BY site ORDER BY n DESC, site LIMIT 1",
            Expect::Rows(vec![top_sites[0].clone()]),
        ),
        (
            "SELECT SUM(n) FROM (SELECT site, COUNT(*) AS n FROM patients WHERE site <> 'west' GROUP BY site ORDER BY n DESC, site LIMIT 2) t",
            Expect::Rows(vec![vec![int(top_two)]]),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE bmi > (SELECT AVG(bmi) FROM patients WHERE sex = 'm')",
            Expect::Rows(vec![vec![int(count(&|p| {
                p.bmi > bmi_mean(&|q| q.sex == "m")
            }))]]),
        ),
        (
            "SELECT COUNT(*) FROM patients p WHERE p.bmi > (SELECT AVG(q.bmi) FROM patients q WHERE q.sex = p.sex)",
            Expect::Rows(vec![vec![int(count(&|p| {
                p.bmi > bmi_mean(&|q| q.sex == p.sex)
            }))]]),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE sex IN (SELECT sex FROM patients GROUP BY sex HAVING COUNT(*) > 100)",
            Expect::Rows(vec![vec![int(count(&|p| p.sex == "f"))]]),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE EXISTS (SELECT 1 FROM patients q GROUP BY q.sex HAVING COUNT(*) > 100)",
            Expect::Rows(vec![vec![int(PATIENTS as i64)]]),
        ),
        (
            "SELECT SUM(CASE WHEN sex = 'f' THEN bmi ELSE 0 END) FROM patients",
            Expect::Rows(vec![vec![float(
                patients
                    .iter()
                    .filter(|p| p.sex == "f")
                    .map(|p| p.bmi)
                    .sum(),
            )]]),
        ),
        // --- Limits.
        (
            "SELECT age % 30 AS a, COUNT(*) FROM patients GROUP BY age % 30",
            too_many_rows(),
        ),
        // --- Malformed SQL, unknown functions, data errors.
        ("SELEC 1", Expect::InvalidContaining("SELEC")),
        (
            "SELECT COUNT(*) FROM patients WHERE",
            Expect::InvalidContaining("Expected"),
        ),
        (
            "SELECT nosuchfunc(age) FROM patients",
            Expect::InvalidContaining("nosuchfunc"),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE CAST(sex AS INT) = 1",
            failed_while_running(),
        ),
        // --- Legitimate analyses, with exact answers.
        (
            "SELECT COUNT(*) FROM patients",
            Expect::Rows(vec![vec![int(PATIENTS as i64)]]),
        ),
        (
            "SELECT COUNT(*) FROM datafusion.public.patients",
            Expect::Rows(vec![vec![int(PATIENTS as i64)]]),
        ),
        (
            "SELECT COUNT(*) FROM (SELECT * FROM patients) t",
            Expect::Rows(vec![vec![int(PATIENTS as i64)]]),
        ),
        (
            "SELECT sex, COUNT(*), AVG(bmi) FROM patients GROUP BY sex ORDER BY sex",
            Expect::Rows(vec![
                vec![
                    text("f"),
                    int(count(&|p| p.sex == "f")),
                    float(bmi_mean(&|p| p.sex == "f")),
                ],
                vec![
                    text("m"),
                    int(count(&|p| p.sex == "m")),
                    float(bmi_mean(&|p| p.sex == "m")),
                ],
            ]),
        ),
        (
            "SELECT sex, outcome, COUNT(*) AS n FROM patients GROUP BY sex, outcome ORDER BY sex, outcome",
            Expect::Rows(
                [("f", 0), ("f", 1), ("m", 0), ("m", 1)]
                    .iter()
                    .map(|&(s, o)| {
                        vec![
                            text(s),
                            int(o),
                            int(count(&|p| p.sex == s && p.outcome == o)),
                        ]
                    })
                    .collect(),
            ),
        ),
        (
            "SELECT AVG(age), STDDEV(bmi), VAR_POP(bmi), SUM(outcome) FROM patients",
            Expect::Rows(vec![vec![
                float(mean(patients.iter().map(|p| p.age as f64))),
                float(bmi_stddev),
                float(bmi_var_pop),
                int(patients.iter().map(|p| p.outcome).sum()),
            ]]),
        ),
        (
            "SELECT COUNT(DISTINCT age) FROM patients",
            Expect::Rows(vec![vec![int(60)]]),
        ),
        (
            "SELECT site, COUNT(*) FROM patients WHERE site <> 'west' GROUP BY site ORDER BY site",
            Expect::Rows(
                ["east", "north", "south"]
                    .iter()
                    .map(|&s| vec![text(s), int(count(&|p| p.site == s))])
                    .collect(),
            ),
        ),
        (
            "WITH s AS (SELECT sex AS k, AVG(bmi) AS m FROM patients AS p GROUP BY p.sex) SELECT k, m FROM s ORDER BY k",
            Expect::Rows(vec![
                vec![text("f"), float(bmi_mean(&|p| p.sex == "f"))],
                vec![text("m"), float(bmi_mean(&|p| p.sex == "m"))],
            ]),
        ),
        (
            "SELECT AVG(n) FROM (SELECT outcome, COUNT(*) AS n FROM patients GROUP BY outcome) t",
            Expect::Rows(vec![vec![float(PATIENTS as f64 / 2.0)]]),
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE bmi > (SELECT AVG(bmi) FROM patients)",
            Expect::Rows(vec![vec![int(count(&|p| p.bmi > all_bmi))]]),
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex HAVING COUNT(*) > 100",
            Expect::Rows(vec![vec![text("f"), int(count(&|p| p.sex == "f"))]]),
        ),
        (
            "SELECT p.sex, COUNT(*) FROM patients p JOIN labs l ON p.site = l.site GROUP BY p.sex ORDER BY p.sex",
            Expect::Rows(vec![
                vec![text("f"), int(join_count("f"))],
                vec![text("m"), int(join_count("m"))],
            ]),
        ),
        (
            "SELECT 'labs' AS k, COUNT(*) FROM labs UNION ALL SELECT 'patients', COUNT(*) FROM patients ORDER BY k",
            Expect::Rows(vec![
                vec![text("labs"), int(LABS as i64)],
                vec![text("patients"), int(PATIENTS as i64)],
            ]),
        ),
        (
            "SELECT sex, COUNT(*) AS n, SUM(COUNT(*)) OVER () AS total FROM patients GROUP BY sex ORDER BY sex",
            Expect::Rows(vec![
                vec![
                    text("f"),
                    int(count(&|p| p.sex == "f")),
                    int(PATIENTS as i64),
                ],
                vec![
                    text("m"),
                    int(count(&|p| p.sex == "m")),
                    int(PATIENTS as i64),
                ],
            ]),
        ),
        (
            "SELECT kind, AVG(value) FROM labs GROUP BY kind ORDER BY kind",
            Expect::Rows(
                ["crp", "hb"]
                    .iter()
                    .map(|&k| {
                        vec![
                            text(k),
                            float(mean(labs.iter().filter(|l| l.kind == k).map(|l| l.value))),
                        ]
                    })
                    .collect(),
            ),
        ),
        ("SELECT 1 + 1 AS two", Expect::Rows(vec![vec![int(2)]])),
        (
            "SELECT COUNT(*) FROM patients a JOIN patients b ON a.age = b.age",
            Expect::Rows(vec![vec![int(PATIENTS as i64 * 4)]]),
        ),
        (
            "WITH m AS (SELECT AVG(bmi) AS mb FROM patients) SELECT COUNT(*) FROM patients p, m WHERE p.bmi > m.mb",
            Expect::Rows(vec![vec![int(count(&|p| p.bmi > all_bmi))]]),
        ),
    ]
}

/// Compares one answer; says what differs.
fn check(expected: &Expect, actual: Result<Vec<Vec<Value>>, QueryError>) -> Result<(), String> {
    let close = |w: f64, g: f64| (w - g).abs() <= 1e-9 * w.abs().max(1.0);
    match (expected, &actual) {
        (Expect::Rows(rows), Ok(got)) => {
            let same = rows.len() == got.len()
                && rows.iter().zip(got).all(|(w, g)| {
                    w.len() == g.len()
                        && w.iter().zip(g).all(|(w, g)| match (w, g) {
                            (Value::Float(w), Value::Float(g)) => close(*w, *g),
                            _ => w == g,
                        })
                });
            if same {
                return Ok(());
            }
        }
        (Expect::Error(error), Err(got)) if error == got => return Ok(()),
        (Expect::InvalidContaining(part), Err(QueryError::Invalid(message)))
            if message.contains(part) =>
        {
            return Ok(());
        }
        _ => {}
    }
    let want = match expected {
        Expect::Rows(rows) => format!("{rows:?}"),
        Expect::Error(error) => format!("{error:?}"),
        Expect::InvalidContaining(part) => format!("invalid containing {part:?}"),
    };
    Err(format!("expected {want}\n     got {actual:?}"))
}

/// Every case of [`cases`] on the tables `write_csv` wrote into `dir`,
/// held as `source` (for Parquet, converted by `write_parquet`; for
/// PostgreSQL, loaded into the database `url` names).
pub(crate) async fn run_suite(dir: &Path, source: Source, url: Option<&str>) {
    let config_path = dir.join("datasets.yaml");
    std::fs::write(&config_path, config_text(dir, source, url)).unwrap();
    let config = StationConfig::load(&config_path).unwrap().data;
    let data: Arc<dyn DataAccess> =
        Arc::new(GrantedDatasets::new(&config, &["patients".into(), "labs".into()]).unwrap());
    let cases = cases();
    let hostile = cases
        .iter()
        .filter(|(_, e)| !matches!(e, Expect::Rows(_)))
        .count();
    assert!(hostile >= 60, "only {hostile} hostile queries");
    let mut failures = Vec::new();
    for (sql, expected) in &cases {
        let actual = data.query(sql).await.map(|t| t.rows);
        if let Err(difference) = check(expected, actual) {
            failures.push(format!("{sql}\n     {difference}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{source:?}: {} of {} queries answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The datasets list shows granted datasets with only allowed columns.
    let infos = data.datasets().await.unwrap();
    let listed: Vec<(String, Vec<String>)> = infos
        .into_iter()
        .map(|d| (d.name, d.columns.into_iter().map(|c| c.name).collect()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "patients".to_owned(),
                ["age", "sex", "bmi", "outcome", "site"]
                    .map(String::from)
                    .to_vec()
            ),
            (
                "labs".to_owned(),
                ["site", "kind", "value"].map(String::from).to_vec()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_legitimate_queries_on_csv() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    run_suite(dir.path(), Source::Csv, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_legitimate_queries_on_parquet() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    write_parquet(dir.path()).await;
    run_suite(dir.path(), Source::Parquet, None).await;
}

/// Grants `names` from a config file written from `yaml`.
pub(crate) fn grant(dir: &Path, yaml: &str, names: &[&str]) -> GrantedDatasets {
    let path = dir.join("limits.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = StationConfig::load(&path).unwrap().data;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    GrantedDatasets::new(&config, &names).unwrap()
}

pub(crate) async fn count_patients(data: &GrantedDatasets) -> Result<Vec<Vec<Value>>, QueryError> {
    data.query("SELECT COUNT(*) FROM patients")
        .await
        .map(|t| t.rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_and_memory_limits_end_one_query_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let csv = dir.path().join("patients.csv");
    let data = grant(
        dir.path(),
        &format!(
            "datasets:\n  - name: patients\n    source: {{ csv: {} }}\n    policy: {{ queryTimeout: 1s }}\n",
            csv.display()
        ),
        &["patients"],
    );
    // 240^3 rows through a predicate and the guard's row sets: seconds.
    let slow = "SELECT COUNT(*) FROM patients a, patients b, patients c \
                WHERE sqrt(a.bmi * b.bmi + c.bmi) > 0";
    assert_eq!(
        data.query(slow).await.unwrap_err(),
        QueryError::LimitExceeded("queryTimeout: the query ran longer than 1s".to_owned())
    );
    assert_eq!(
        count_patients(&data).await,
        Ok(vec![vec![int(PATIENTS as i64)]])
    );

    let data = grant(
        dir.path(),
        &format!(
            "datasets:\n  - name: patients\n    source: {{ csv: {} }}\n    policy: {{ queryMemory: 1Ki }}\n",
            csv.display()
        ),
        &["patients"],
    );
    assert_eq!(
        data.query("SELECT age % 2, COUNT(DISTINCT bmi) FROM patients GROUP BY age % 2")
            .await
            .unwrap_err(),
        QueryError::LimitExceeded(
            "queryMemory: the query needs more than 1Ki of memory".to_owned()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_sources_fail_their_own_queries_only() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    std::fs::write(
        dir.path().join("corrupt.parquet"),
        b"PAR1 this is not parquet PAR1",
    )
    .unwrap();
    let mut ragged = String::from("a,b\n");
    for i in 0..3000 {
        ragged.push_str(&format!("{i},{i}\n"));
    }
    ragged.push_str("1,2,3\n");
    std::fs::write(dir.path().join("ragged.csv"), ragged).unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        "datasets:
  - name: patients
    source: {{ csv: {d}/patients.csv }}
  - name: corrupt
    source: {{ parquet: {d}/corrupt.parquet }}
  - name: ragged
    source: {{ csv: {d}/ragged.csv }}
  - name: down
    source: {{ postgres: {{ url: \"postgres://reader:x@127.0.0.1:{closed_port}/none\", table: t }} }}
",
        d = dir.path().display()
    );
    let data = grant(
        dir.path(),
        &yaml,
        &["patients", "corrupt", "ragged", "down"],
    );
    let unavailable = |name: &str| {
        QueryError::Invalid(format!(
            "dataset {name} is unavailable on this station: its source cannot be read \
             (the station's log has the details)"
        ))
    };
    for name in ["corrupt", "down"] {
        assert_eq!(
            data.query(&format!("SELECT COUNT(*) FROM {name}"))
                .await
                .unwrap_err(),
            unavailable(name),
        );
        assert_eq!(
            count_patients(&data).await,
            Ok(vec![vec![int(PATIENTS as i64)]])
        );
    }
    let Expect::Error(running) = failed_while_running() else {
        unreachable!()
    };
    assert_eq!(
        data.query("SELECT COUNT(*) FROM ragged").await.unwrap_err(),
        running
    );
    assert_eq!(
        count_patients(&data).await,
        Ok(vec![vec![int(PATIENTS as i64)]])
    );
    // The listing leaves out what cannot be opened.
    let names: Vec<String> = data
        .datasets()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["patients", "ragged"]);
}

#[test]
fn sandlet_query_prints_csv_or_one_line_naming_the_refusal() {
    use crate::fixtures::run_sandlet;
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let config = dir.path().join("datasets.yaml");
    std::fs::write(&config, config_text(dir.path(), Source::Csv, None)).unwrap();
    let config = config.to_str().unwrap();

    let ran = run_sandlet([
        "query",
        "--config",
        config,
        "SELECT sex, COUNT(*) AS n, 'a,\"b' AS quoted FROM patients GROUP BY sex ORDER BY sex",
    ]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let f = (0..PATIENTS).filter(|&i| patient(i).sex == "f").count();
    let m = PATIENTS - f;
    assert_eq!(
        ran.stdout,
        format!("sex,n,quoted\nf,{f},\"a,\"\"b\"\nm,{m},\"a,\"\"b\"\n")
    );

    for (args, line) in [
        (
            vec!["SELECT site, COUNT(*) FROM patients GROUP BY site"],
            "denied: minGroupSize: every group an aggregate makes must summarise at least 5 rows of patients, and a group of this query summarises fewer",
        ),
        (
            vec!["--grant", "labs", "SELECT COUNT(*) FROM patients"],
            "not-granted: the query names a table or column that is not granted to this run",
        ),
        (
            vec!["SELECT age % 30, COUNT(*) FROM patients GROUP BY age % 30"],
            "limit-exceeded: maxResultRows: the result has more than 20 rows",
        ),
    ] {
        let mut full = vec!["query", "--config", config];
        full.extend(args);
        let ran = run_sandlet(full);
        assert_eq!(ran.code, Some(1), "{}", ran.stderr);
        assert_eq!(ran.stdout, "");
        assert_eq!(ran.stderr, format!("{line}\n"));
    }
    let ran = run_sandlet(["query", "--config", config, "SELEC 1"]);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.starts_with("invalid: ") && ran.stderr.lines().count() == 1,
        "{}",
        ran.stderr
    );

    // A broken configuration is the admin's error, with file and line.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "datasets:\n  - name: p\n    source: { excel: x.xlsx }\n",
    )
    .unwrap();
    let ran = run_sandlet(["query", "--config", bad.to_str().unwrap(), "SELECT 1"]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("bad.yaml") && ran.stderr.contains("line 3"),
        "{}",
        ran.stderr
    );
}

#[test]
fn raw_files_are_mounted_read_only_and_only_where_the_policy_allows() {
    use crate::fixtures::{guests, run_sandlet};
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let config = dir.path().join("raw.yaml");
    std::fs::write(
        &config,
        format!(
            "datasets:
  - name: patients
    source: {{ csv: {d}/patients.csv }}
    policy: {{ rawFiles: true }}
  - name: labs
    source: {{ csv: {d}/labs.csv }}
",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let escape = |grants: &[&str], attempt: &[&str]| {
        let mut args = vec!["run", "--config", config.to_str().unwrap()];
        for grant in grants {
            args.extend(["--grant", grant]);
        }
        args.push(guests().escape.to_str().unwrap());
        args.push("--");
        args.extend_from_slice(attempt);
        run_sandlet(args)
    };
    let size = std::fs::metadata(dir.path().join("patients.csv"))
        .unwrap()
        .len();
    // Granted with rawFiles: the file is readable ("ESCAPED" is the escape
    // guest's word for "it could read it").
    let ran = escape(&["patients"], &["read", "/data/patients/patients.csv"]);
    assert_eq!(ran.code, Some(10), "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        format!("ESCAPED: read {size} bytes from /data/patients/patients.csv\n")
    );
    // ... but only that file, and not for writing.
    for attempt in [
        &["read", "/data/patients/labs.csv"][..],
        &["read", "/data/patients/../labs/labs.csv"],
        &["write", "/data/patients"],
    ] {
        let ran = escape(&["patients", "labs"], attempt);
        assert_eq!(ran.code, Some(0), "{attempt:?}: {}", ran.stdout);
        assert!(
            ran.stdout.starts_with("contained: "),
            "{attempt:?}: {}",
            ran.stdout
        );
    }
    // Not granted, or granted without rawFiles: nothing under /data.
    for (grants, path) in [
        (&[][..], "/data/patients/patients.csv"),
        (&["labs"], "/data/labs/labs.csv"),
    ] {
        let ran = escape(grants, &["read", path]);
        assert_eq!(ran.code, Some(0), "{grants:?}: {}", ran.stdout);
        assert!(ran.stdout.starts_with("contained: "), "{}", ran.stdout);
    }
}
