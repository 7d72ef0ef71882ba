//! A command that imports an interface sandlet does not offer (a stand-in
//! for `wasi:http`): it must be refused before it runs, naming the
//! interface.

wit_bindgen::generate!({
    inline: r#"
        package example:net@0.1.0;

        interface fetch {
            get: func(url: string) -> string;
        }

        world uses-network {
            import fetch;
        }
    "#,
    world: "uses-network",
});

fn main() {
    println!("{}", example::net::fetch::get("http://192.0.2.1/"));
}
