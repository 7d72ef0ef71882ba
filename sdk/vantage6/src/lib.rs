//! Guest SDK for vantage6 tasks run on sandlet: what vantage6's
//! `wrap_algorithm` does for a Python algorithm image, for a wasm guest.
//!
//! A vantage6 node (5.x) starts each task as a Kubernetes Job whose
//! container gets no arguments, only:
//!
//! - environment variables whose values are base32 (RFC 4648, padded) with
//!   each `=` written as `!`: `INPUT_FILE`, `OUTPUT_FILE`,
//!   `ALGORITHM_METHOD`, `FUNCTION_ACTION`, `TASK_ID`, `ORGANIZATION_ID`,
//!   `USER_REQUESTED_DATAFRAMES`, ...; values the node passes through a
//!   Secret (`CONTAINER_TOKEN`) arrive as they are;
//! - the input file: the JSON arguments the researcher gave (the method is
//!   not in it: it is `ALGORITHM_METHOD`);
//! - the output file, where the result goes as JSON; the node sends its
//!   bytes to the researcher only if the container exits 0.
//!
//! [`run`] does all of it around one function per method. This crate knows
//! nothing of sandlet's data interface: the algorithm queries its granted
//! datasets itself (see `algorithms/vantage6-mean`), so the station's
//! policy applies and the algorithm never sees rows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// The variables vantage6's node encodes, as it names them.
pub mod names {
    /// The path of the file holding the task's JSON arguments.
    pub const INPUT_FILE: &str = "INPUT_FILE";
    /// The path of the file the task's JSON result is written to.
    pub const OUTPUT_FILE: &str = "OUTPUT_FILE";
    /// The name of the algorithm's method to run.
    pub const METHOD: &str = "ALGORITHM_METHOD";
    /// The task's step, e.g. `federated_compute` or `central_compute`.
    pub const ACTION: &str = "FUNCTION_ACTION";
    /// The task's id on the vantage6 server.
    pub const TASK_ID: &str = "TASK_ID";
    /// The id of the node running the task.
    pub const NODE_ID: &str = "NODE_ID";
    /// The id of the organization whose node runs the task.
    pub const ORGANIZATION_ID: &str = "ORGANIZATION_ID";
    /// The id of the collaboration the task belongs to.
    pub const COLLABORATION_ID: &str = "COLLABORATION_ID";
    /// The dataframes the researcher asked for: groups separated by `;`,
    /// names within a group by `,` (see [`crate::Task::dataframes`]).
    pub const DATAFRAMES: &str = "USER_REQUESTED_DATAFRAMES";
    /// The path of the task's session folder, where the node keeps the
    /// session's dataframes.
    pub const SESSION_FOLDER: &str = "SESSION_FOLDER";
}

/// Decodes one value as vantage6's node encodes it: `!` back to `=`, then
/// base32 and UTF-8. A value that is not such an encoding is returned as
/// it is (vantage6's Python wrapper does the same, except that it crashes
/// on valid base32 that is not UTF-8; here that too is returned raw).
pub fn decode(value: &str) -> String {
    let padded = value.replace('!', "=");
    data_encoding::BASE32
        .decode(padded.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| value.to_owned())
}

/// Encodes a value as vantage6's node does (for tests and tools).
pub fn encode(value: &str) -> String {
    data_encoding::BASE32
        .encode(value.as_bytes())
        .replace('=', "!")
}

/// One task, as the node described it to the container.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The method to run (`ALGORITHM_METHOD`).
    pub method: String,
    /// The step (`FUNCTION_ACTION`): `federated_compute`,
    /// `central_compute`, ...
    pub action: String,
    /// The arguments, a JSON object (`null` in the file reads as `{}`).
    pub arguments: serde_json::Map<String, Value>,
    /// Where the result goes (`OUTPUT_FILE`); [`Task::write_output`]
    /// writes it.
    pub output_file: PathBuf,
    /// Every variable, decoded (`TASK_ID`, `ORGANIZATION_ID`, ...).
    pub env: BTreeMap<String, String>,
}

impl Task {
    /// Reads the task from `vars` (the process environment in a guest).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Task, String> {
        let env: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(key, value)| {
                let value = decode(&value);
                (key, value)
            })
            .collect();
        let get = |name: &str| {
            env.get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| {
                    format!("{name} is not set: is this container started by a vantage6 node?")
                })
        };
        let input_file = get(names::INPUT_FILE)?;
        let bytes = std::fs::read(&input_file)
            .map_err(|e| format!("cannot read the input file {input_file}: {e}"))?;
        let arguments = match serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("the input file {input_file} is not JSON: {e}"))?
        {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map,
            other => {
                return Err(format!(
                    "the input file {input_file} holds {other}, not a JSON object of arguments"
                ));
            }
        };
        Ok(Task {
            method: get(names::METHOD)?,
            action: env.get(names::ACTION).cloned().unwrap_or_default(),
            arguments,
            output_file: PathBuf::from(get(names::OUTPUT_FILE)?),
            env,
        })
    }

    /// The task of this process.
    pub fn from_env() -> Result<Task, String> {
        Task::from_vars(std::env::vars())
    }

    /// A string argument.
    pub fn string(&self, name: &str) -> Result<&str, String> {
        match self.arguments.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(format!("argument {name:?} must be a string, not {other}")),
            None => Err(format!("argument {name:?} is missing")),
        }
    }

    /// An optional string argument.
    pub fn optional_string(&self, name: &str) -> Result<Option<&str>, String> {
        match self.arguments.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.string(name).map(Some),
        }
    }

    /// The dataframes the researcher asked for, by position
    /// (`USER_REQUESTED_DATAFRAMES`: groups split on `;`, names on `,`).
    pub fn dataframes(&self) -> Vec<Vec<String>> {
        self.env
            .get(names::DATAFRAMES)
            .map(|v| {
                v.split(';')
                    .filter(|g| !g.is_empty())
                    .map(|g| g.split(',').map(str::to_owned).collect())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes `output` as the task's result (JSON, replacing the file).
    pub fn write_output(&self, output: &Value) -> Result<(), String> {
        let bytes = serde_json::to_vec(output).map_err(|e| e.to_string())?;
        std::fs::write(&self.output_file, bytes).map_err(|e| {
            format!(
                "cannot write the output file {}: {e}",
                self.output_file.display()
            )
        })
    }
}

/// A method of the algorithm: the task in, the result out.
pub type Method = fn(&Task) -> Result<Value, String>;

/// Runs the task of this process with the method it names among
/// `methods`, writes the result to the output file and returns it as text
/// (for the pod's termination message). Every failure is also printed to
/// stderr, which is the run's log the researcher reads; a failed task
/// writes no output, and the caller must end non-zero (an algorithm
/// component's `Err`), which the node reports as crashed.
pub fn run(methods: &[(&str, Method)]) -> Result<String, String> {
    let result = Task::from_env().and_then(|task| run_task(&task, methods));
    match result {
        Ok(text) => {
            println!("info > done: {text}");
            Ok(text)
        }
        Err(error) => {
            eprintln!("error > {error}");
            Err(error)
        }
    }
}

/// [`run`] for a task already read.
pub fn run_task(task: &Task, methods: &[(&str, Method)]) -> Result<String, String> {
    let method = methods
        .iter()
        .find(|(name, _)| *name == task.method)
        .map(|(_, f)| f)
        .ok_or_else(|| {
            let known: Vec<&str> = methods.iter().map(|(n, _)| *n).collect();
            format!(
                "this algorithm has no method {:?} (it has {})",
                task.method,
                known.join(", ")
            )
        })?;
    println!(
        "info > running {} ({}) of task {}",
        task.method,
        task.action,
        task.env.get(names::TASK_ID).map_or("?", String::as_str)
    );
    let output = method(task)?;
    task.write_output(&output)?;
    Ok(output.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_as_vantage6_encodes_them() {
        // Examples produced by vantage6 5.0.3's own encoder.
        for (encoded, plain) in [
            ("OBQXE5DJMFWA!!!!", "partial"),
            ("MZSWIZLSMF2GKZC7MNXW24DVORSQ!!!!", "federated_compute"),
            ("G43DKNA!", "7654"),
            (
                "F5QXA4BPOZQW45DBM5STML3UMFZWWL3JNZYHK5A!",
                "/app/vantage6/task/input",
            ),
            ("MFRGG!!!", "abc"),
            ("", ""),
        ] {
            assert_eq!(decode(encoded), plain);
            assert_eq!(encode(plain), encoded);
        }
        // Raw values stay raw: a JWT, a path, lowercase, bad padding, and
        // valid base32 that is not UTF-8 (which crashes vantage6's wrapper).
        for raw in ["eyJhbGciOi.x.y", "/root", "partial", "443", "ABCDEFGH"] {
            assert_eq!(decode(raw), raw);
        }
    }

    fn task_dir(input: &str) -> (tempfile::TempDir, Vec<(String, String)>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("input"), input).unwrap();
        std::fs::write(dir.path().join("output"), "").unwrap();
        let path = |f: &str| dir.path().join(f).display().to_string();
        let vars = vec![
            ("INPUT_FILE".to_owned(), encode(&path("input"))),
            ("OUTPUT_FILE".to_owned(), encode(&path("output"))),
            ("ALGORITHM_METHOD".to_owned(), encode("partial")),
            ("FUNCTION_ACTION".to_owned(), encode("federated_compute")),
            ("TASK_ID".to_owned(), encode("3")),
            ("USER_REQUESTED_DATAFRAMES".to_owned(), encode("a,b;c")),
            ("CONTAINER_TOKEN".to_owned(), "eyJ.raw.token".to_owned()),
        ];
        (dir, vars)
    }

    fn sum_column(task: &Task) -> Result<Value, String> {
        let column = task.string("column")?;
        Ok(serde_json::json!({ "sum": 10.0, "count": 4, "column": column }))
    }

    #[test]
    fn a_task_is_read_run_and_its_output_written() {
        let (dir, vars) = task_dir(r#"{"column": "age"}"#);
        let task = Task::from_vars(vars).unwrap();
        assert_eq!(task.method, "partial");
        assert_eq!(task.action, "federated_compute");
        assert_eq!(task.string("column").unwrap(), "age");
        assert_eq!(task.optional_string("dataset").unwrap(), None);
        assert_eq!(task.dataframes(), [vec!["a", "b"], vec!["c"]]);
        assert_eq!(task.env["CONTAINER_TOKEN"], "eyJ.raw.token");
        let text = run_task(&task, &[("partial", sum_column)]).unwrap();
        let written: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("output")).unwrap()).unwrap();
        assert_eq!(
            written,
            serde_json::json!({"sum": 10.0, "count": 4, "column": "age"})
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), written);
    }

    #[test]
    fn bad_tasks_are_named_and_write_no_output() {
        let (dir, vars) = task_dir("null");
        let task = Task::from_vars(vars.clone()).unwrap();
        assert!(task.arguments.is_empty());
        let e = run_task(&task, &[("partial", sum_column)]).unwrap_err();
        assert_eq!(e, "argument \"column\" is missing");
        let e = run_task(&task, &[("central", sum_column)]).unwrap_err();
        assert!(e.contains("no method \"partial\" (it has central)"), "{e}");
        assert_eq!(std::fs::read(dir.path().join("output")).unwrap(), b"");

        std::fs::write(dir.path().join("input"), "[1, 2]").unwrap();
        let e = Task::from_vars(vars.clone()).unwrap_err();
        assert!(e.contains("not a JSON object of arguments"), "{e}");
        std::fs::write(dir.path().join("input"), "{").unwrap();
        let e = Task::from_vars(vars.clone()).unwrap_err();
        assert!(e.contains("is not JSON"), "{e}");
        std::fs::write(dir.path().join("input"), "{}").unwrap();
        let without: Vec<_> = vars
            .into_iter()
            .filter(|(k, _)| k != "ALGORITHM_METHOD")
            .collect();
        let e = Task::from_vars(without).unwrap_err();
        assert!(e.contains("ALGORITHM_METHOD is not set"), "{e}");
        let e = Task::from_vars(Vec::new()).unwrap_err();
        assert!(e.contains("INPUT_FILE is not set"), "{e}");
    }
}
