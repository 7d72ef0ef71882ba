//! A component that exports neither `wasi:cli/run` nor the
//! `sandlet:algorithm` `run` function: sandlet must refuse it by name.

wit_bindgen::generate!({
    inline: "package test:unknown; world unknown { export greet: func() -> string; }",
});

struct Unknown;

impl Guest for Unknown {
    fn greet() -> String {
        "hi".to_owned()
    }
}

export!(Unknown);
