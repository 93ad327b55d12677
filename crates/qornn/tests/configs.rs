//! Every file in `configs/` parses and validates (a typo there would only show at run time).

use qornn::config::Config;

#[test]
fn every_shipped_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        count += 1;
    }
    assert!(
        count >= 20,
        "only {count} configs found in {}",
        dir.display()
    );
}
