//! `include/gram.h` is what cbindgen generates from the crate now. After changing the API:
//! `GRAM_UPDATE_HEADER=1 cargo test -p gram-capi --test header`.

#[test]
fn header_is_current() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = format!("{dir}/include/gram.h");
    if std::env::var_os("GRAM_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is stale: GRAM_UPDATE_HEADER=1 cargo test -p gram-capi --test header"
    );
}
