//! `qornn report`: tables and plots from run folders and sweep folders.
//!
//! Runs are grouped by the settings that vary between them (the seed aside): one table
//! row per group, with the test metric as mean ± std over its seeds.

mod plots;
mod tables;

use crate::config::Config;
use crate::config::TaskName;
use crate::error::{Error, Result};
use crate::run::{self, EvalRecord, Summary};
use crate::sweep;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Settings that never make two runs different configurations.
const NOT_COMPARED: [&str; 6] = [
    "seed",
    "threads",
    "data_dir",
    "weights",
    "init_from",
    "verify_data",
];

/// One run folder as read back.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub dir: PathBuf,
    pub config: Config,
    /// Each setting as text (`bits` as the width in effect: `fp` for full precision).
    pub settings: BTreeMap<String, String>,
    /// `None` while the run has not finished.
    pub summary: Option<Summary>,
    pub metrics: Vec<EvalRecord>,
}

/// The metric a task is judged by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Copy, sMNIST, pMNIST (percent).
    Accuracy,
    /// Adding (mean squared error).
    Loss,
    BitsPerChar,
    Perplexity,
}

impl Metric {
    pub fn of_task(task: TaskName) -> Self {
        match task {
            TaskName::Adding => Metric::Loss,
            TaskName::PtbChar => Metric::BitsPerChar,
            TaskName::PtbWord => Metric::Perplexity,
            TaskName::Copy | TaskName::Smnist | TaskName::Pmnist => Metric::Accuracy,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy (%)",
            Metric::Loss => "MSE",
            Metric::BitsPerChar => "bits per character",
            Metric::Perplexity => "perplexity",
        }
    }

    fn of_summary(self, s: &Summary) -> Option<f64> {
        match self {
            Metric::Accuracy => s.test.accuracy.map(|a| 100.0 * a),
            Metric::Loss => Some(s.test.loss),
            Metric::BitsPerChar => s.test.bits_per_char,
            Metric::Perplexity => s.test.perplexity,
        }
    }

    fn of_record(self, r: &EvalRecord) -> Option<f64> {
        match self {
            Metric::Accuracy => r.val_accuracy.map(|a| 100.0 * a),
            Metric::Loss => Some(r.val_loss),
            Metric::BitsPerChar => r.val_bits_per_char,
            Metric::Perplexity => r.val_perplexity,
        }
    }
}

/// Runs that share every compared setting but the seed.
#[derive(Clone, Debug)]
pub struct Group {
    /// The values of the varying keys, in `Report::keys` order.
    pub values: Vec<String>,
    /// Indices into `Report::runs`.
    pub runs: Vec<usize>,
    pub metric: Metric,
}

impl Group {
    /// `model=hadamrnn bits=4`.
    pub fn label(&self, keys: &[String]) -> String {
        if keys.is_empty() {
            return "all runs".into();
        }
        keys.iter()
            .zip(&self.values)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Everything `qornn report` writes comes from this.
#[derive(Clone, Debug)]
pub struct Report {
    pub runs: Vec<RunRecord>,
    /// The settings that differ between runs (the seed aside).
    pub keys: Vec<String>,
    pub groups: Vec<Group>,
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

impl Report {
    /// Reads the runs under `paths`: run folders (`config.toml`), sweep folders
    /// (`sweep.toml`), or folders whose subfolders are runs.
    pub fn collect(paths: &[PathBuf]) -> Result<Self> {
        let mut runs = Vec::new();
        // A run reached twice (named twice, or inside a sweep also named) counts once: it
        // is one seed, not two.
        let mut seen = std::collections::HashSet::new();
        for path in paths {
            let found = run_dirs(path)?;
            if found.is_empty() {
                return Err(Error::bad_file(
                    path,
                    "holds no run folder (config.toml) and no sweep (sweep.toml)",
                ));
            }
            for dir in found {
                let identity = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
                if seen.insert(identity) {
                    runs.push(read_run(&dir)?);
                }
            }
        }
        Ok(Self::from_runs(runs))
    }

    /// Groups runs by the settings that vary between them.
    pub fn from_runs(runs: Vec<RunRecord>) -> Self {
        let mut all_keys: Vec<&String> = runs.iter().flat_map(|r| r.settings.keys()).collect();
        all_keys.sort();
        all_keys.dedup();
        let keys: Vec<String> = all_keys
            .into_iter()
            .filter(|k| !NOT_COMPARED.contains(&k.as_str()))
            .filter(|k| {
                let first = runs[0].settings.get(*k);
                runs.iter().any(|r| r.settings.get(*k) != first)
            })
            .cloned()
            .collect();
        let mut groups: Vec<Group> = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let values: Vec<String> = keys
                .iter()
                .map(|k| run.settings.get(k).cloned().unwrap_or_else(|| "-".into()))
                .collect();
            match groups.iter_mut().find(|g| g.values == values) {
                Some(group) => group.runs.push(i),
                None => groups.push(Group {
                    values,
                    runs: vec![i],
                    metric: Metric::of_task(run.config.task),
                }),
            }
        }
        Report { runs, keys, groups }
    }

    /// Writes the tables (`results.md`, `.csv`, `.tex`) and the plots (SVG and PNG) into
    /// `out`; returns the files written.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let mut written = tables::write(self, out)?;
        written.extend(plots::write(self, out)?);
        Ok(written)
    }

    /// The finished runs of a group.
    fn finished<'a>(&'a self, group: &'a Group) -> impl Iterator<Item = &'a Summary> + 'a {
        group
            .runs
            .iter()
            .filter_map(|&i| self.runs[i].summary.as_ref())
    }
}

/// The run folders under `path`, in index order for a sweep, by name otherwise.
fn run_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    if path.join(sweep::SWEEP_FILE).exists() {
        let grid = sweep::Grid::from_file(&path.join(sweep::SWEEP_FILE))?;
        return Ok((0..grid.len())
            .map(|i| sweep::run_dir(path, i))
            .filter(|d| d.join(run::CONFIG_FILE).exists())
            .collect());
    }
    if path.join(run::CONFIG_FILE).exists() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(run::CONFIG_FILE).exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Each setting of `config` as text, `bits` as the width in effect (`fp`: full precision).
fn settings_of(config: &Config) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = toml::Table::try_from(config)
        .expect("Config is a table")
        .into_iter()
        .map(|(k, v)| (k, sweep::value_text(&v)))
        .collect();
    let bits = if config.full_precision() {
        "fp".to_string()
    } else {
        config.bits().to_string()
    };
    settings.insert("bits".into(), bits);
    settings
}

fn read_run(dir: &Path) -> Result<RunRecord> {
    let config = Config::from_file(&dir.join(run::CONFIG_FILE))?;
    let settings = settings_of(&config);
    let summary = run::read_summary(dir)?;
    let metrics_path = dir.join(run::METRICS_FILE);
    let metrics = match std::fs::read_to_string(&metrics_path) {
        Ok(text) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map_err(|e| Error::bad_file(&metrics_path, format!("line {}: {e}", n + 1)))
            })
            .collect::<Result<Vec<EvalRecord>>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&metrics_path, e)),
    };
    Ok(RunRecord {
        dir: dir.to_path_buf(),
        config,
        settings,
        summary,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }

    fn record(model: &str, bits: Option<u32>, seed: u64) -> RunRecord {
        let config = Config {
            model: model.parse().unwrap(),
            bits,
            seed,
            ..Config::default()
        };
        RunRecord {
            dir: PathBuf::from(format!("{model}-{seed}")),
            settings: settings_of(&config),
            config,
            summary: None,
            metrics: Vec::new(),
        }
    }

    #[test]
    fn groups_by_the_varying_settings_but_the_seed() {
        let runs = vec![
            record("qornn-bjorck", Some(4), 1),
            record("qornn-bjorck", Some(4), 2),
            record("hadamrnn", Some(4), 1),
            record("qornn-bjorck", Some(8), 1),
        ];
        let report = Report::from_runs(runs);
        assert_eq!(report.keys, vec!["bits".to_string(), "model".to_string()]);
        let sizes: Vec<usize> = report.groups.iter().map(|g| g.runs.len()).collect();
        assert_eq!(sizes, vec![2, 1, 1]);
        assert_eq!(
            report.groups[0].label(&report.keys),
            "bits=4 model=qornn-bjorck"
        );
    }
}
