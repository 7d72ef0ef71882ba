//! `federated-mean-combine '{"combine": [{"sum": S, "count": N}, ...]}'`:
//! the federated mean's central step as an ordinary container (a GPU Job on
//! a container worker). Same input and output as the wasm algorithm's
//! `combine`: the result is printed and written as the container's
//! termination message, an error goes to stderr and the exit code is 1.
//! The devices the device plugin allocated are logged.

use std::process::ExitCode;

use federated_mean_core as combine;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    combine: Vec<combine::Partial>,
}

/// Where Kubernetes reads a container's termination message by default.
const TERMINATION_LOG: &str = "/dev/termination-log";

fn run(input: &str) -> Result<String, String> {
    let input: Input = serde_json::from_str(input)
        .map_err(|e| format!("invalid input: expected {{\"combine\": [...]}}: {e}"))?;
    let combined = combine::combine(&input.combine)?;
    serde_json::to_string(&combined).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let devices = std::env::var("NVIDIA_VISIBLE_DEVICES").unwrap_or_else(|_| "none".to_owned());
    eprintln!("federated-mean-combine: GPUs allocated: {devices}");
    let input = std::env::args().nth(1).unwrap_or_else(|| "{}".to_owned());
    let (text, code) = match run(&input) {
        Ok(output) => {
            println!("{output}");
            (output, ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("federated-mean-combine: {error}");
            (error, ExitCode::FAILURE)
        }
    };
    // Absent outside Kubernetes; the output above is the result then.
    let _ = std::fs::write(TERMINATION_LOG, text);
    code
}
