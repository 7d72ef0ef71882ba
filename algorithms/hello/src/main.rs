//! `hello [--append FILE] [--exit CODE] [--ticks N] [--sleep SECONDS] [ARGS...]`:
//! appends a line `run` to FILE (in a volume: the tests count runs so), prints
//! each argument and each environment variable it was given, then `tick 1`
//! to `tick N` a fifth of a second apart, sleeps SECONDS, and exits with CODE
//! (default 0).
//!
//! A WASI command, the simplest kind of module sandlet runs: it shows that a
//! guest sees exactly the args and env its run plan granted and nothing of
//! the host's.

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut exit_code = 0;
    let mut ticks = 0u32;
    let mut sleep_secs = 0u64;
    let mut out = std::io::stdout().lock();
    while let Some(arg) = args.next() {
        if arg == "--append" {
            let path = args.next().unwrap_or_default();
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(b"run\n"));
            if let Err(e) = appended {
                eprintln!("hello: cannot append to {path:?}: {e}");
                exit(65);
            }
            continue;
        }
        if arg == "--ticks" || arg == "--sleep" {
            let value = args.next().unwrap_or_default();
            let Ok(n) = value.parse::<u32>() else {
                eprintln!("hello: {arg} needs a number, got {value:?}");
                exit(64);
            };
            if arg == "--ticks" {
                ticks = n;
            } else {
                sleep_secs = n.into();
            }
            continue;
        }
        if arg == "--exit" {
            let code = args.next().unwrap_or_default();
            exit_code = match code.parse::<u8>() {
                Ok(code) => code,
                Err(_) => {
                    eprintln!("hello: --exit needs a number, got {code:?}");
                    exit(64);
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
    for i in 1..=ticks {
        std::thread::sleep(std::time::Duration::from_millis(200));
        writeln!(out, "tick {i}").unwrap();
        out.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_secs(sleep_secs));
    exit(exit_code);
}

/// Exits with exactly `code`: preview 1's `proc_exit` carries it, preview 2
/// needs `exit-with-code` (its plain `exit` knows only success or failure).
fn exit(code: u8) -> ! {
    #[cfg(target_env = "p2")]
    wasip2::cli::exit::exit_with_code(code);
    std::process::exit(code.into())
}
