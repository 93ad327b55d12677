//! Run folders: a resumed run equals an uninterrupted one, and what is on disk is never
//! lost (diverged runs, finished runs, bad checkpoints, changed settings, oversized
//! configurations).

use qornn::config::Config;
use qornn::run;

mod small_runs;
use small_runs::{small_copy, tiny_run};

/// A run folder's `metrics.jsonl` without its wall times.
fn metrics_without_time(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(run::METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

/// Stop after 200 of 400 steps (the config's step count then raised), resume, and compare
/// every evaluation with an uninterrupted run: equal to the last bit.
#[test]
fn resumed_run_matches_uninterrupted_run() {
    use qornn::quant::activation::ActRounding;
    for (model, range, act_bits) in [
        ("qornn-bjorck", qornn::quant::RangeRule::Max, None),
        ("qornn-projunn-t", qornn::quant::RangeRule::Max, None),
        ("qornn-bjorck", qornn::quant::RangeRule::Lsq, None),
        // Stochastic rounding of the hidden state draws by step: the resumed half too.
        ("hadamrnn", qornn::quant::RangeRule::Max, Some(8)),
    ] {
        let config = Config {
            steps: 400,
            eval_every: 100,
            threads: 2,
            range,
            act_bits,
            act_bits_from: 100,
            act_train_rounding: act_bits.map_or(ActRounding::Nearest, |_| ActRounding::Stochastic),
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
        assert_eq!(
            metrics_without_time(split.path()),
            metrics_without_time(whole.path()),
            "{model}: metrics differ after resume"
        );
    }
}

/// Issue 22, defect 2: a recurrent learning rate of 1e20 made the recurrent parameter NaN,
/// the quantizer mapped NaN to code 0, the loss stayed finite, and NaN weights were written
/// over `checkpoint.safetensors` and `best.safetensors`. Now the run stops with an error
/// naming the step, and every checkpoint left on disk is finite and resumes.
#[test]
fn a_diverged_run_stops_and_keeps_its_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        steps: 20,
        eval_every: 1,
        orthogonal_lr: Some(1e20),
        ..small_copy("qornn-bjorck", 4)
    };
    let error = run::start(config.clone(), dir.path(), &mut ()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("step") && text.contains("not finite"),
        "{text}"
    );
    let spec = config.model_spec_for(&config.task().unwrap());
    let mut saved = 0;
    for file in [run::CHECKPOINT_FILE, run::BEST_FILE] {
        let path = dir.path().join(file);
        if !path.exists() {
            continue;
        }
        saved += 1;
        let ckpt = qornn::checkpoint::load(&path, &spec).unwrap();
        for t in &ckpt.params {
            assert!(
                t.data.iter().all(|v| v.is_finite()),
                "{file}: {} is not finite",
                t.name
            );
        }
    }
    assert!(
        saved > 0,
        "the steps before the divergence were checkpointed"
    );
    // The last good checkpoint resumes (and stops again at the same step).
    let again = run::resume(dir.path(), &mut ()).unwrap_err().to_string();
    assert!(again.contains("not finite"), "{again}");
}

/// Issue 22, defect 20: `qornn train --out DIR` on a finished run whose checkpoints were
/// removed started afresh and overwrote its metrics and summary. The folder is refused
/// while it holds any of a run's results, and they stay as they were.
#[test]
fn a_finished_run_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_run(20);
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let (metrics, summary) = (read(run::METRICS_FILE), read(run::SUMMARY_FILE));
    for file in [run::CHECKPOINT_FILE, run::BEST_FILE] {
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
    let err = run::start(config.clone(), dir.path(), &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds a run"), "{err}");
    std::fs::remove_file(dir.path().join(run::SUMMARY_FILE)).unwrap();
    let err = run::start(config, dir.path(), &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains(run::METRICS_FILE), "{err}");
    assert_eq!(read(run::METRICS_FILE), metrics);
    assert!(!summary.is_empty());
}

/// A checkpoint's bytes with one metadata entry replaced, or one tensor's shape.
fn rewritten(bytes: &[u8], meta: Option<(&str, &str)>, reshape: Option<&str>) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    use safetensors::SafeTensors;
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut info = header.metadata().clone().unwrap();
    if let Some((key, value)) = meta {
        info.insert(key.into(), value.into());
    }
    let st = SafeTensors::deserialize(bytes).unwrap();
    let tensors: Vec<(String, TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            if reshape == Some(name.as_str()) {
                let shape = view.shape().iter().rev().copied().collect();
                let view = TensorView::new(view.dtype(), shape, view.data()).unwrap();
                (name, view)
            } else {
                (name, view)
            }
        })
        .collect();
    safetensors::serialize(tensors, Some(info)).unwrap()
}

/// Issue 22, defects 15 and 16: a checkpoint's `step` of 1e30 skipped training and
/// reported success, a negative or NaN one restarted and dropped metrics, a NaN
/// `best_val_loss` froze the best model, and a transposed tensor loaded (its byte length
/// matched). Each is refused when the checkpoint is read, naming the entry.
#[test]
fn checkpoints_with_impossible_bookkeeping_or_shapes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_run(10);
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let spec = config.model_spec_for(&config.task().unwrap());
    let path = dir.path().join(run::CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let load = |b: Vec<u8>| {
        std::fs::write(&path, b).unwrap();
        qornn::checkpoint::load(&path, &spec)
    };
    assert!(load(rewritten(&bytes, None, None)).is_ok());
    for (key, value) in [
        ("step", "1e30"),
        ("step", "-3"),
        ("step", "NaN"),
        ("best_val_loss", "NaN"),
        ("best_val_loss", "-1"),
        ("best_step", "11"),
        ("seconds", "inf"),
        ("updates", "2.5"),
    ] {
        let err = load(rewritten(&bytes, Some((key, value)), None))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key} = {value}: {err}");
    }
    let err = load(rewritten(&bytes, None, Some("param.weight_ih")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("param.weight_ih") && err.contains("shape"),
        "{err}"
    );
}

/// Issue 22, defect 9: `qornn report` spun at 100 % CPU when a loss was about 2e307 or more,
/// or a size 0 (the log axes' tick search). It now draws what an axis can hold and returns.
#[test]
fn reports_of_absurd_values_finish() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = tiny_run(20);
    run::start(config, &run_dir, &mut ()).unwrap();
    let edit = |file: &str, from: &str, to: &str| {
        let path = run_dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let re = |t: &str, key: &str| -> String {
            let start = t.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
            let end = start + t[start..].find([',', '\n', '}']).unwrap();
            format!("{}{}{}", &t[..start], to.trim(), &t[end..])
        };
        std::fs::write(&path, re(&text, from)).unwrap();
    };
    edit(run::METRICS_FILE, "val_loss", "2e307");
    edit(run::SUMMARY_FILE, "size_bytes", "0");
    edit(run::SUMMARY_FILE, "loss", "1.7e308");
    let out = dir.path().join("report");
    let (done, finished) = std::sync::mpsc::channel();
    let paths = vec![run_dir.clone()];
    std::thread::spawn(move || {
        let report = qornn::report::Report::collect(&paths).unwrap();
        done.send(report.write(&out).map(|files| files.len()))
            .unwrap();
    });
    let written = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the report finishes");
    assert!(written.unwrap() > 0);
}

/// Issue 22, defect 18: the same run given twice to `qornn report` (by two spellings of its
/// path) counted as two seeds. It is read once.
#[test]
fn a_run_named_twice_is_one_run_in_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = tiny_run(10);
    run::start(config, &run_dir, &mut ()).unwrap();
    let again = dir.path().join(".").join("run");
    let report =
        qornn::report::Report::collect(&[run_dir.clone(), again, dir.path().into()]).unwrap();
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.groups.len(), 1);
    assert_eq!(report.groups[0].runs.len(), 1);
}

/// Issue 22, defect 18: runs of tasks judged by different metrics (copy: accuracy; adding:
/// MSE) were drawn on one metric axis labelled by the first task. Each row of the table
/// names its own metric, and the metric figures are drawn only for one metric.
#[test]
fn runs_of_different_metrics_do_not_share_a_metric_axis() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    run::start(tiny_run(10), &copy, &mut ()).unwrap();
    let adding = dir.path().join("adding");
    let adding_config = Config {
        task: "adding".parse().unwrap(),
        length: 20,
        ..tiny_run(10)
    };
    run::start(adding_config, &adding, &mut ()).unwrap();
    let report = qornn::report::Report::collect(&[copy.clone(), adding]).unwrap();
    let out = dir.path().join("report");
    report.write(&out).unwrap();
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        table.contains("accuracy (%)") && table.contains("MSE"),
        "{table}"
    );
    assert!(out.join("curves-loss.svg").exists());
    assert!(!out.join("curves-metric.svg").exists() && !out.join("frontier.svg").exists());
    let single = qornn::report::Report::collect(&[copy]).unwrap();
    single.write(&dir.path().join("single")).unwrap();
    assert!(dir.path().join("single/curves-metric.svg").exists());
}

/// Issue 22, defect 17: `--init-from` a run of another size copied only what fitted (here
/// the read-out's bias) and trained on silently. It is refused when none of the recurrence
/// comes across, naming what did.
#[test]
fn init_from_a_run_of_another_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let config = tiny_run(10);
    run::start(config.clone(), &source, &mut ()).unwrap();
    let other = Config {
        hidden: 32,
        init_from: Some(source.clone()),
        ..config.clone()
    };
    let err = run::start(other, &dir.path().join("other"), &mut ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recurrent tensors") && err.contains("readout.bias"),
        "{err}"
    );
    let same = Config {
        init_from: Some(source),
        ..config
    };
    run::start(same, &dir.path().join("same"), &mut ()).unwrap();
}

/// Issue 22, defect 14: a run's `config.toml` edited between a checkpoint and `--resume`
/// was used silently. The checkpoint carries the settings it was trained with; a resumed
/// run may change only steps, epochs, threads and the data folder, and is refused naming
/// any other setting that differs.
#[test]
fn a_run_resumes_only_with_the_settings_it_was_trained_with() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_run(10);
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let edited = Config {
        lr: 0.5,
        hidden: config.hidden,
        ..config.clone()
    };
    let err = run::resume_with(dir.path(), edited, &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr") && !err.contains("hidden,"), "{err}");
    let on_disk = Config::from_file(&dir.path().join(run::CONFIG_FILE)).unwrap();
    assert_eq!(
        on_disk.lr,
        small_copy("qornn-bjorck", 8).lr,
        "a refused resume writes nothing"
    );
    let longer = Config {
        steps: 20,
        threads: 2,
        ..config
    };
    let summary = run::resume_with(dir.path(), longer, &mut ()).unwrap();
    assert_eq!(summary.steps, 20);
}

/// Issue 22, defect 12: sizes had no upper bound, and the process aborted allocating after
/// creating the run folder. A size past its bound, or a configuration whose activations
/// would take more than 8 GiB, is refused naming the setting, and nothing is created.
#[test]
fn oversized_configurations_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let huge = Config {
        hidden: 100_000,
        ..tiny_run(10)
    };
    let err = run::start(huge, &out, &mut ()).unwrap_err().to_string();
    assert!(err.contains("hidden") && err.contains("100000"), "{err}");
    let heavy = Config {
        delay: 1000,
        batch: 20_000,
        hidden: 1024,
        ..tiny_run(10)
    };
    let err = run::start(heavy, &out, &mut ()).unwrap_err().to_string();
    assert!(err.contains("GiB") && err.contains("batch 20000"), "{err}");
    assert!(!out.exists(), "nothing was created");
}

/// Issue 22, defect 12: a `config.toml` edited to a size whose activations would not fit was
/// read on `--resume` and allocated. The memory check runs before the checkpoint is read,
/// and the folder is left as it was.
#[test]
fn a_resume_that_would_not_fit_in_memory_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    run::start(tiny_run(20), dir.path(), &mut ()).unwrap();
    let config_path = dir.path().join(run::CONFIG_FILE);
    let checkpoint = std::fs::read(dir.path().join(run::CHECKPOINT_FILE)).unwrap();
    let heavy = Config {
        delay: 1000,
        batch: 20_000,
        hidden: 1024,
        steps: 40,
        ..tiny_run(20)
    };
    std::fs::write(&config_path, heavy.to_toml()).unwrap();
    let err = run::resume(dir.path(), &mut ()).unwrap_err().to_string();
    assert!(err.contains("GiB") && err.contains("batch 20000"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&config_path).unwrap(),
        heavy.to_toml()
    );
    assert_eq!(
        std::fs::read(dir.path().join(run::CHECKPOINT_FILE)).unwrap(),
        checkpoint
    );
}

/// A run that would end before its activations are quantized (`act_bits_from` at or past
/// its last step) has no model in its final arithmetic to score: it is refused before it
/// trains, naming the setting (it used to train, then fail to find its best checkpoint);
/// one step earlier it runs.
#[test]
fn a_run_that_ends_before_its_final_arithmetic_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        act_bits: Some(8),
        act_bits_from: 10,
        ..tiny_run(10)
    };
    let out = dir.path().join("late");
    let err = run::start(config.clone(), &out, &mut ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("act_bits_from") && err.contains("step 10"),
        "{err}"
    );
    assert!(!out.join(run::BEST_FILE).exists());
    let earlier = Config {
        act_bits_from: 9,
        ..config
    };
    run::start(earlier, &dir.path().join("in_time"), &mut ()).unwrap();
}

/// Stops at the first step past `at` that is not an evaluation (as a signal does).
struct StopAt(u64, u64);

impl run::Observer for StopAt {
    fn on_step(&mut self, step: u64, _loss: f32) {
        self.1 = step;
    }
    fn should_stop(&mut self) -> bool {
        self.1 >= self.0
    }
}

/// A run stopped between two evaluations (a signal's checkpoint) resumes to the same
/// metrics as an uninterrupted one, the exact W's codes changed since the last evaluation
/// included: they are counted against W as it was at that evaluation, not at the stop.
#[test]
fn a_run_stopped_between_evaluations_counts_code_changes_from_its_last_evaluation() {
    let config = Config {
        steps: 300,
        eval_every: 100,
        ..small_copy("hadamrnn", 4)
    };
    let whole = tempfile::tempdir().unwrap();
    run::start(config.clone(), whole.path(), &mut ()).unwrap();
    let split = tempfile::tempdir().unwrap();
    let stopped = run::start(config.clone(), split.path(), &mut StopAt(150, 0));
    assert!(
        matches!(stopped, Err(qornn::Error::Interrupted { .. })),
        "{stopped:?}"
    );
    run::resume(split.path(), &mut ()).unwrap();
    let (resumed, expected) = (
        metrics_without_time(split.path()),
        metrics_without_time(whole.path()),
    );
    assert!(
        expected
            .iter()
            .any(|r| r["code_changes"].as_u64().unwrap_or(0) > 0),
        "W's codes must change for the test to say anything: {expected:?}"
    );
    assert_eq!(resumed, expected);
}
