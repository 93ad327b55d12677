//! Every file in `configs/` parses and validates, and every grid in `sweeps/` expands into
//! valid runs (a typo there would only show at run time); every registered model trains a
//! step from its entry alone.

use qornn::config::Config;
use qornn::sweep::Grid;
use std::path::PathBuf;

/// The repository folder `name` and its `.toml` files.
fn toml_files(name: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    (dir, files)
}

#[test]
fn every_shipped_config_is_valid() {
    let (dir, files) = toml_files("configs");
    assert!(files.len() >= 20, "only {files:?} in {}", dir.display());
    for path in files {
        let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// The README says `qornn train` with no flags is `configs/copy-t100-qornn-bjorck-8b.toml`.
#[test]
fn the_default_run_is_the_8_bit_copy_config() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/copy-t100-qornn-bjorck-8b.toml");
    let from_file = Config::from_file(&path).unwrap();
    // The file spells out what the default leaves to rules (8 bits, recurrent lr = lr / 32).
    let mut default = Config::default();
    default.bits = Some(default.bits());
    default.orthogonal_lr = Some(default.recurrent_lr());
    assert_eq!(from_file, default);
}

#[test]
fn every_shipped_sweep_expands_into_valid_runs() {
    let (dir, files) = toml_files("sweeps");
    assert!(files.len() >= 4, "only {files:?} in {}", dir.display());
    for path in files {
        let grid = Grid::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let runs = grid
            .expand()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!runs.is_empty(), "{}", path.display());
    }
}

/// A grid file may spell `range` as `quantizer`, as a config file may.
#[test]
fn a_grid_may_use_the_quantizer_alias() {
    let grid = Grid::parse(
        "quantizer = \"mse\"\nbits = 4\n[grid]\nseed = [1, 2]\n",
        std::path::Path::new("alias.toml"),
    )
    .unwrap();
    let runs = grid.expand().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].config.range, qornn::quant::RangeRule::Mse);
}

/// Every registered model validates, builds and takes a finite training step from its
/// entry alone (a small copy task), with its default bit width.
#[test]
fn every_registered_model_trains_a_step() {
    for model in qornn::registry::ModelName::all() {
        let config = Config {
            model,
            hidden: 8,
            block: 4,
            delay: 5,
            batch: 4,
            eval_sequences: 4,
            threads: 1,
            ..Config::default()
        };
        config.validate().unwrap_or_else(|e| panic!("{model}: {e}"));
        let task = config.task().unwrap();
        let mut trainer = qornn::train::Trainer::new(config.clone(), task).unwrap();
        let (loss, _) = trainer.train_step().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{model}: loss {loss}");
        assert_eq!(trainer.model.spec.model, model);
        assert_eq!(
            trainer.model.spec.parametrisation().is_some(),
            model.entry().parametrisation.is_some(),
            "{model}"
        );
        assert_eq!(config.bits(), model.entry().default_bits, "{model}");
    }
}
