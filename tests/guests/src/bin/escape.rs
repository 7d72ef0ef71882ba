//! `escape ATTEMPT [ARGS...]`: tries one way out of the sandbox.
//!
//! Containment attempts print `contained: <why>` and exit 0 when the sandbox
//! held, or print `ESCAPED: <what>` and exit 10 when it did not. Resource
//! attempts (memory, loop, recurse, print, sleep) never end on their own:
//! only a limit stops them.

use std::hint::black_box;
use std::io::Write;

fn contained(why: impl std::fmt::Display) -> ! {
    println!("contained: {why}");
    exit(0)
}

fn escaped(what: impl std::fmt::Display) -> ! {
    println!("ESCAPED: {what}");
    exit(10)
}

/// Exits with exactly `code` (preview 2's plain `exit` carries only 0 or 1).
fn exit(code: u8) -> ! {
    std::io::stdout().flush().ok();
    wasip2::cli::exit::exit_with_code(code);
    unreachable!("exit-with-code returned")
}

/// Reads `path`; reading anything is an escape.
fn try_read(path: &str) -> ! {
    match std::fs::read(path) {
        Ok(bytes) => escaped(format!("read {} bytes from {path}", bytes.len())),
        Err(e) => contained(format!("{path}: {e}")),
    }
}

// Recursing without end is the point of this attempt.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // Keeps a frame on the wasm stack and in the shadow stack.
    let local = black_box([depth; 16]);
    black_box(recurse(depth + 1)) + local[0]
}

/// Recursion whose frames live on the wasm stack only (no address-taken
/// locals, so nothing goes to the shadow stack in linear memory), and whose
/// result LLVM cannot turn into a loop.
fn recurse_native(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    recurse_native(n - 1).rotate_left(3) ^ n
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        // Any absolute path outside a preopen, e.g. /etc/passwd.
        "read" => try_read(arg(1)),
        // Every file write inside a read-only preopen must fail.
        "write" => {
            let dir = arg(1);
            let attempts: [(&str, std::io::Result<()>); 4] = [
                ("create", std::fs::write(format!("{dir}/created.txt"), b"x")),
                (
                    "append",
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(format!("{dir}/existing.txt"))
                        .and_then(|mut f| f.write_all(b"tampered")),
                ),
                ("remove", std::fs::remove_file(format!("{dir}/existing.txt"))),
                ("mkdir", std::fs::create_dir(format!("{dir}/newdir"))),
            ];
            for (what, result) in attempts {
                if result.is_ok() {
                    escaped(format!("{what} succeeded in {dir}"));
                }
            }
            contained(format!("no write succeeded in {dir}"))
        }
        // Writes must succeed in a read-write preopen (the control case).
        "write-rw" => match std::fs::write(format!("{}/written.txt", arg(1)), b"ok") {
            Ok(()) => {
                println!("wrote");
                exit(0)
            }
            Err(e) => {
                println!("failed: {e}");
                exit(3)
            }
        },
        // The guest must see exactly the variables it was given.
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            if let Ok(value) = std::env::var(arg(1)) {
                escaped(format!("host variable {}={value} is visible", arg(1)));
            }
            contained(format!("variables: [{}]", vars.join(", ")))
        }
        "tcp" => {
            let addr = arg(1);
            match std::net::TcpStream::connect(addr) {
                Ok(_) => escaped(format!("connected to {addr}")),
                Err(e) => {
                    use std::net::ToSocketAddrs;
                    if let Ok(mut found) = ("localhost", 80).to_socket_addrs()
                        && found.next().is_some()
                    {
                        escaped("resolved localhost");
                    }
                    contained(format!("connect {addr}: {e}"))
                }
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
                if hoard.len() % 64 == 0 {
                    eprintln!("holding {} MiB", hoard.len());
                }
            }
        }
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "recurse" => {
            println!("{}", recurse(0));
        }
        "recurse-native" => {
            let depth = arg(1).parse().unwrap_or(u64::MAX);
            println!("{}", recurse_native(black_box(depth)));
        }
        "print" => {
            let chunk = vec![b'x'; 64 * 1024];
            let mut out = std::io::stdout().lock();
            loop {
                if out.write_all(&chunk).is_err() {
                    // Keep trying: a guest that ignores errors must still be stopped.
                    continue;
                }
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            escaped("slept an hour");
        }
        other => {
            eprintln!("unknown attempt {other:?}");
            exit(64)
        }
    }
}
