//! `hello [--exit CODE] [ARGS...]`: prints each argument and each environment
//! variable it was given, then exits with CODE (default 0).
//!
//! A WASI command, the simplest kind of module sandlet runs: it shows that a
//! guest sees exactly the args and env its run plan granted and nothing of
//! the host's.

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut exit_code = 0;
    let mut out = std::io::stdout().lock();
    while let Some(arg) = args.next() {
        if arg == "--exit" {
            let code = args.next().unwrap_or_default();
            exit_code = match code.parse() {
                Ok(code) => code,
                Err(_) => {
                    eprintln!("hello: --exit needs a number, got {code:?}");
                    std::process::exit(64);
                }
            };
            continue;
        }
        writeln!(out, "arg: {arg}").unwrap();
    }
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (key, value) in vars {
        writeln!(out, "env: {key}={value}").unwrap();
    }
    writeln!(out, "hello from wasm").unwrap();
    out.flush().unwrap();
    std::process::exit(exit_code);
}
