//! Byte-level mutations of corpus inputs, as libFuzzer's mutator makes them
//! (without coverage feedback): bit flips, interesting values, inserted,
//! deleted, duplicated and overwritten ranges, splices with another input
//! and dictionary tokens. Deterministic for a given seed.

/// xorshift64*: small, fast and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed` (any value, zero
    /// included).
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's fixed point.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next number of the sequence.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that often find edge cases, as bytes.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"0",
    b"-1",
    b"4294967296",
    b"9223372036854775807",
    b"1e308",
    b"\"\"",
    b"[]",
    b"{}",
    b"\n",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
];

/// Inputs grow to at most this many bytes.
pub const MAX_LEN: usize = 64 * 1024;

/// Applies one to eight mutations to `input`; `other` is another corpus
/// input to splice from.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8], dictionary: &[&str]) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        match rng.below(10) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next_u64() as u8;
            }
            2 if !data.is_empty() => {
                let start = rng.below(data.len());
                let len = 1 + rng.below((data.len() - start).min(64));
                data.drain(start..start + len);
            }
            3 => {
                let at = rng.below(data.len() + 1);
                let len = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            4 if !data.is_empty() => {
                // Duplicate a range somewhere else (nesting, repetition).
                let start = rng.below(data.len());
                let len = 1 + rng.below((data.len() - start).min(256));
                let copy = data[start..start + len].to_vec();
                let at = rng.below(data.len() + 1);
                data.splice(at..at, copy);
            }
            5 | 6 if !dictionary.is_empty() => {
                let token = dictionary[rng.below(dictionary.len())].as_bytes();
                let at = rng.below(data.len() + 1);
                if rng.below(2) == 0 || at == data.len() {
                    data.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(data.len());
                    data.splice(at..end, token.iter().copied());
                }
            }
            7 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(data.len() + 1);
                data.splice(at..at, value.iter().copied());
            }
            8 if !other.is_empty() => {
                // Splice: our head, their tail.
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ if data.len() > 1 => {
                // Swap two bytes.
                let (a, b) = (rng.below(data.len()), rng.below(data.len()));
                data.swap(a, b);
            }
            _ => data.push(rng.next_u64() as u8),
        }
    }
    data.truncate(MAX_LEN);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_mutations_and_others_differ() {
        let input = b"datasets:\n  - name: patients\n";
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| mutate(&mut rng, input, b"other", &["modules:"]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let outputs = run(7);
        assert!(outputs.iter().any(|o| o.as_slice() != input));
        assert!(outputs.iter().all(|o| o.len() <= MAX_LEN));
    }
}

/// How a target's inputs are structured, for mutations that keep them
/// well-formed enough to reach past the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Bytes only.
    Bytes,
    /// JSON documents: values are replaced, dropped, duplicated and grafted.
    Json,
    /// YAML documents: mutated as JSON trees, written back as YAML.
    Yaml,
    /// Wasm: besides byte mutations, valid random modules (wasm-smith).
    Wasm,
}

/// One mutant of `input`: half the time byte-level ([`mutate`]), half the
/// time structured by `format`.
pub fn mutant(
    rng: &mut Rng,
    format: Format,
    input: &[u8],
    other: &[u8],
    dictionary: &[&str],
) -> Vec<u8> {
    if rng.below(2) == 0 {
        return mutate(rng, input, other, dictionary);
    }
    let structured = match format {
        Format::Bytes => None,
        Format::Json => {
            let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
            parse(input).map(|mut value| {
                let donor = parse(other).unwrap_or(serde_json::Value::Null);
                mutate_tree(rng, &mut value, &donor, dictionary);
                serde_json::to_vec(&value).expect("a JSON value serializes")
            })
        }
        Format::Yaml => {
            let parse = |b: &[u8]| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| serde_yaml::from_str::<serde_json::Value>(t).ok())
            };
            parse(input).and_then(|mut value| {
                let donor = parse(other).unwrap_or(serde_json::Value::Null);
                mutate_tree(rng, &mut value, &donor, dictionary);
                serde_yaml::to_string(&value).ok().map(String::into_bytes)
            })
        }
        Format::Wasm => {
            let entropy: Vec<u8> = (0..1 + rng.below(4096))
                .map(|_| rng.next_u64() as u8)
                .collect();
            let mut unstructured = arbitrary::Unstructured::new(&entropy);
            let config = wasm_smith::Config {
                export_everything: rng.below(2) == 0,
                ..wasm_smith::Config::default()
            };
            wasm_smith::Module::new(config, &mut unstructured)
                .ok()
                .map(|m| m.to_bytes())
        }
    };
    structured.unwrap_or_else(|| mutate(rng, input, other, dictionary))
}

/// Values that often break assumptions about a field.
fn interesting_value(rng: &mut Rng) -> serde_json::Value {
    use serde_json::{Value, json};
    match rng.below(20) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(i64::MIN),
        5 => json!(u64::MAX),
        6 => json!(1e308),
        7 => json!(-0.5),
        8 => json!(""),
        9 => json!("../../../../etc/passwd"),
        10 => json!("a".repeat(1 + rng.below(20_000))),
        11 => json!("\u{0}"),
        12 => json!([]),
        13 => json!({}),
        14 => {
            let mut deep = json!(1);
            for _ in 0..rng.below(300) {
                deep = json!([deep]);
            }
            deep
        }
        15 => json!("64Mi"),
        16 => json!("-1Mi"),
        17 => json!("1e400"),
        18 => json!("sha256:"),
        _ => json!("/"),
    }
}

/// The JSON pointers of every node of `value`.
fn pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A key named by a dictionary token (`"name":` gives `name`).
fn key_of(token: &str) -> String {
    token
        .trim_matches(|c: char| c == '"' || c == ':' || c == '{' || c == '[' || c == ' ')
        .split('"')
        .next()
        .unwrap_or("")
        .to_owned()
}

/// One to four changes to nodes of `value`.
fn mutate_tree(
    rng: &mut Rng,
    value: &mut serde_json::Value,
    donor: &serde_json::Value,
    dictionary: &[&str],
) {
    use serde_json::Value;
    for _ in 0..1 + rng.below(4) {
        let mut all = Vec::new();
        pointers(value, String::new(), &mut all);
        let at = &all[rng.below(all.len())];
        let replacement = match rng.below(6) {
            0 | 1 => Some(interesting_value(rng)),
            2 => {
                let mut theirs = Vec::new();
                pointers(donor, String::new(), &mut theirs);
                let from = &theirs[rng.below(theirs.len())];
                donor.pointer(from).cloned()
            }
            _ => None,
        };
        let Some(node) = value.pointer_mut(at) else {
            continue;
        };
        if let Some(replacement) = replacement {
            *node = replacement;
            continue;
        }
        match node {
            Value::Object(map) if !map.is_empty() && rng.below(2) == 0 => {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                map.remove(&key);
            }
            Value::Object(map) => {
                let key = if dictionary.is_empty() {
                    "x".to_owned()
                } else {
                    key_of(dictionary[rng.below(dictionary.len())])
                };
                map.insert(key, interesting_value(rng));
            }
            Value::Array(items) if !items.is_empty() => {
                let i = rng.below(items.len());
                if rng.below(2) == 0 {
                    items.remove(i);
                } else {
                    let copy = items[i].clone();
                    for _ in 0..1 + rng.below(8) {
                        items.push(copy.clone());
                    }
                }
            }
            Value::String(text) => {
                let bytes = mutate(rng, text.as_bytes(), b"", dictionary);
                *text = String::from_utf8_lossy(&bytes).into_owned();
            }
            _ => *node = interesting_value(rng),
        }
    }
}
