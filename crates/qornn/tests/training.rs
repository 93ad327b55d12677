//! Short training runs: the models learn, and a resumed run equals an uninterrupted one.

use qornn::config::Config;
use qornn::run;

/// A copy task small enough to learn in about a second on one core.
fn small_copy(model: &str, bits: u32) -> Config {
    Config {
        delay: 10,
        hidden: 64,
        batch: 32,
        steps: 600,
        eval_every: 200,
        eval_sequences: 256,
        optimizer: qornn::optim::OptimizerKind::Adam,
        lr: 3e-3,
        orthogonal_lr: Some(3e-3),
        model: model.into(),
        bits,
        threads: 1,
        ..Config::default()
    }
}

#[test]
fn small_copy_task_ends_well_below_its_baseline() {
    for (model, bits) in [
        ("qornn-bjorck", 8),
        ("qornn-projunn-d", 8),
        ("qornn-projunn-t", 8),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let summary = run::start(small_copy(model, bits), dir.path(), &mut ()).unwrap();
        let ratio = summary.test.loss / summary.baseline_loss;
        assert!(
            ratio < 0.6,
            "{model}: test loss {:.4} vs baseline {:.4}",
            summary.test.loss,
            summary.baseline_loss
        );
        for file in [
            run::CONFIG_FILE,
            run::METRICS_FILE,
            run::CHECKPOINT_FILE,
            run::BEST_FILE,
            run::SUMMARY_FILE,
        ] {
            assert!(dir.path().join(file).exists(), "{model}: {file} missing");
        }
        let lines = std::fs::read_to_string(dir.path().join(run::METRICS_FILE)).unwrap();
        assert_eq!(
            lines.lines().count(),
            3,
            "{model}: one metrics line per evaluation"
        );
    }
}

#[test]
fn adding_task_lowers_its_loss() {
    let config = Config {
        task: "adding".into(),
        length: 30,
        hidden: 32,
        batch: 32,
        steps: 300,
        eval_every: 100,
        eval_sequences: 256,
        optimizer: qornn::optim::OptimizerKind::Adam,
        lr: 3e-3,
        orthogonal_lr: Some(3e-3),
        bits: 8,
        threads: 1,
        ..Config::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = run::start(config, dir.path(), &mut ()).unwrap();
    assert!(
        summary.test.accuracy.is_none(),
        "regression has no accuracy"
    );
    assert!(
        summary.test.loss < summary.baseline_loss,
        "test MSE {} vs baseline {}",
        summary.test.loss,
        summary.baseline_loss
    );
}

/// Stop after 200 of 400 steps (the config's step count then raised), resume, and compare
/// every evaluation with an uninterrupted run: equal to the last bit.
#[test]
fn resumed_run_matches_uninterrupted_run() {
    for model in ["qornn-bjorck", "qornn-projunn-t"] {
        let config = Config {
            steps: 400,
            eval_every: 100,
            threads: 2,
            ..small_copy(model, 4)
        };
        let whole = tempfile::tempdir().unwrap();
        let expected = run::start(config.clone(), whole.path(), &mut ()).unwrap();

        let split = tempfile::tempdir().unwrap();
        run::start(
            Config {
                steps: 200,
                ..config.clone()
            },
            split.path(),
            &mut (),
        )
        .unwrap();
        std::fs::write(split.path().join(run::CONFIG_FILE), config.to_toml()).unwrap();
        let resumed = run::resume(split.path(), &mut ()).unwrap();

        assert_eq!(
            resumed.test, expected.test,
            "{model}: test evaluation differs after resume"
        );
        let strip_time = |dir: &std::path::Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(dir.join(run::METRICS_FILE))
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("seconds");
                    v
                })
                .collect()
        };
        assert_eq!(
            strip_time(split.path()),
            strip_time(whole.path()),
            "{model}: metrics differ after resume"
        );
    }
}
