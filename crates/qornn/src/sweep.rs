//! Sweeps: one base configuration and a grid of values, expanded into numbered run folders.
//!
//! A grid file is a config file (any `configs/*.toml` key) with a `[grid]` table of lists:
//!
//! ```toml
//! task = "copy"
//! steps = 500
//! [grid]
//! bits = [2, 4, 8]
//! seed = [1, 2, 3]
//! ```
//!
//! The runs are the Cartesian product of the lists, keys in alphabetical order, the last key
//! varying fastest (above: bits 2 with seeds 1, 2, 3, then bits 4, ...). Run `i` lives in
//! `SWEEP/<i>/` (index only: long parameter names in paths break other tools); the grid
//! is kept in `SWEEP/sweep.toml` and the runs' values in `SWEEP/runs.csv`.

use crate::checkpoint::write_atomically;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::run::{self, Observer, Summary};
use std::path::{Path, PathBuf};

/// The grid kept in every sweep folder.
pub const SWEEP_FILE: &str = "sweep.toml";
/// One row per run: its index, folder and grid values.
pub const RUNS_FILE: &str = "runs.csv";
/// The logs of the runs (local: `<index>.out`, Slurm: `<job>_<index>.out`).
pub const LOGS_DIR: &str = "logs";

/// The most runs one sweep may hold: a grid whose lists multiply past this (or past what
/// a machine word holds) is refused when it is read, before anything is written.
pub const MAX_RUNS: usize = 10_000;

/// A base configuration and the lists of values to sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// Settings shared by every run.
    pub base: toml::Table,
    /// Keys with their values, in expansion order (the last varies fastest).
    pub axes: Vec<(String, Vec<toml::Value>)>,
}

/// One run of a sweep.
#[derive(Clone, Debug)]
pub struct Point {
    pub index: usize,
    /// The grid values of this run, one per axis.
    pub values: Vec<(String, toml::Value)>,
    pub config: Config,
}

/// What `run_point` did.
#[derive(Debug)]
pub enum Outcome {
    /// The run had finished before (its `summary.json` exists).
    AlreadyDone(Summary),
    Finished(Summary),
}

impl Grid {
    /// Parses a grid file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        let mut base: toml::Table = text
            .parse()
            .map_err(|e| Error::bad_file(source, format!("not valid TOML: {e}")))?;
        let mut grid = Grid {
            base: toml::Table::new(),
            axes: Vec::new(),
        };
        if let Some(table) = base.remove("grid") {
            let toml::Value::Table(table) = table else {
                return Err(Error::bad_file(source, "`grid` must be a table of lists"));
            };
            for (key, values) in table {
                let toml::Value::Array(values) = values else {
                    return Err(Error::bad_file(
                        source,
                        format!("grid key `{key}` must be a list of values"),
                    ));
                };
                grid.set_axis(&key, values, source)?;
            }
        }
        grid.base = base;
        Ok(grid)
    }

    /// Reads a grid file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Applies a command-line override `key=v1,v2,...`: each value is read as TOML (a
    /// number, `true`), else taken as a string. Several values make (or replace) an axis;
    /// one value sets the key for every run.
    pub fn apply_override(&mut self, text: &str) -> Result<()> {
        let (key, list) = text.split_once('=').ok_or_else(|| {
            Error::config(
                "override",
                format!("`{text}` is not KEY=VALUE[,VALUE...] (e.g. bits=2,4,8)"),
            )
        })?;
        let values: Vec<toml::Value> = list
            .split(',')
            .filter(|v| !v.trim().is_empty())
            .map(|v| parse_value(v.trim()))
            .collect();
        let key = key.trim();
        self.base.remove(key);
        if let [value] = values.as_slice() {
            self.axes.retain(|(k, _)| k != key);
            self.base.insert(key.to_string(), value.clone());
            return Ok(());
        }
        self.set_axis(key, values, Path::new("the command line"))
    }

    fn set_axis(&mut self, key: &str, values: Vec<toml::Value>, source: &Path) -> Result<()> {
        if values.is_empty() {
            return Err(Error::bad_file(
                source,
                format!("grid key `{key}` has an empty list: a sweep needs at least one value"),
            ));
        }
        let mut axes = self.axes.clone();
        axes.retain(|(k, _)| k != key);
        axes.push((key.to_string(), values));
        axes.sort_by(|a, b| a.0.cmp(&b.0));
        let runs = axes
            .iter()
            .try_fold(1usize, |runs, (_, v)| runs.checked_mul(v.len()))
            .filter(|&runs| runs <= MAX_RUNS);
        if runs.is_none() {
            let sizes: Vec<String> = axes
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.len()))
                .collect();
            return Err(Error::bad_file(
                source,
                format!(
                    "the grid has more than {MAX_RUNS} runs ({}); split it into several sweeps",
                    sizes.join(", ")
                ),
            ));
        }
        self.axes = axes;
        Ok(())
    }

    /// How many runs the grid has (at most [`MAX_RUNS`], checked as each axis is set).
    pub fn len(&self) -> usize {
        self.axes.iter().map(|(_, v)| v.len()).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every run of the grid, each configuration checked; an error names the run.
    pub fn expand(&self) -> Result<Vec<Point>> {
        (0..self.len())
            .map(|index| {
                let values = self.values_of(index);
                // Unset keys take `Config`'s defaults when it is read (`serde(default)`);
                // a table of every default would also hold `range` beside a file's alias
                // `quantizer`, which serde refuses as a duplicate.
                let mut table = self.base.clone();
                table.extend(values.iter().cloned());
                let described = describe(&values);
                let config: Config = toml::Value::Table(table).try_into().map_err(|e| {
                    Error::config("grid", format!("run {index} ({described}): {e}"))
                })?;
                config.validate().map_err(|e| {
                    Error::config("grid", format!("run {index} ({described}): {e}"))
                })?;
                Ok(Point {
                    index,
                    values,
                    config,
                })
            })
            .collect()
    }

    /// The values of run `index`: row-major over the axes, the last axis fastest.
    fn values_of(&self, index: usize) -> Vec<(String, toml::Value)> {
        let mut rest = index;
        let mut values: Vec<(String, toml::Value)> = self
            .axes
            .iter()
            .rev()
            .map(|(key, list)| {
                let value = list[rest % list.len()].clone();
                rest /= list.len();
                (key.clone(), value)
            })
            .collect();
        values.reverse();
        values
    }

    /// The grid as a file: the base settings, then `[grid]`.
    pub fn to_toml(&self) -> String {
        let mut table = self.base.clone();
        let grid: toml::Table = self
            .axes
            .iter()
            .map(|(k, v)| (k.clone(), toml::Value::Array(v.clone())))
            .collect();
        table.insert("grid".into(), toml::Value::Table(grid));
        toml::to_string(&table).expect("a TOML table serialises")
    }
}

/// A value as written on the command line: TOML when it parses as a value, else a string.
fn parse_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// A value as a table cell: strings without quotes.
pub fn value_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `bits=4, model=hadamrnn`.
pub fn describe(values: &[(String, toml::Value)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The folder of run `index`.
pub fn run_dir(sweep: &Path, index: usize) -> PathBuf {
    sweep.join(index.to_string())
}

/// Writes (or checks) a sweep folder: `sweep.toml`, `runs.csv` and every run's
/// `config.toml`. A folder that holds a different grid is refused; one with the same grid
/// is kept as it is, so that finished runs are skipped and stopped ones resume.
pub fn prepare(grid: &Grid, sweep: &Path) -> Result<Vec<Point>> {
    let points = grid.expand()?;
    let grid_path = sweep.join(SWEEP_FILE);
    if grid_path.exists() {
        let existing = Grid::from_file(&grid_path)?;
        if existing != *grid {
            return Err(Error::bad_file(
                &grid_path,
                "this sweep folder holds a different grid; choose another --out (or delete \
                 the folder to start over)",
            ));
        }
    }
    // Nothing inside the sweep folder that it writes through may be a symbolic link: one
    // planted there would send a run's files elsewhere.
    let not_a_link = |path: &Path| -> Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => Err(Error::bad_file(
                path,
                "is a symbolic link inside the sweep folder; qornn writes only into folders \
                 of its own there (remove the link)",
            )),
            _ => Ok(()),
        }
    };
    not_a_link(&sweep.join(LOGS_DIR))?;
    for point in &points {
        not_a_link(&run_dir(sweep, point.index))?;
    }
    std::fs::create_dir_all(sweep.join(LOGS_DIR)).map_err(|e| Error::io(sweep, e))?;
    write_atomically(&grid_path, grid.to_toml().as_bytes())?;
    let mut csv = String::from("index,folder");
    for (key, _) in &grid.axes {
        csv.push(',');
        csv.push_str(key);
    }
    csv.push('\n');
    for point in &points {
        csv.push_str(&format!("{},{}", point.index, point.index));
        for (_, value) in &point.values {
            csv.push(',');
            csv.push_str(&csv_field(&value_text(value)));
        }
        csv.push('\n');
        let dir = run_dir(sweep, point.index);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // A started run's config.toml may record another thread count; leave it.
        if !dir.join(run::CHECKPOINT_FILE).exists() {
            write_atomically(
                &dir.join(run::CONFIG_FILE),
                point.config.to_toml().as_bytes(),
            )?;
        }
    }
    write_atomically(&sweep.join(RUNS_FILE), csv.as_bytes())?;
    Ok(points)
}

/// A CSV field, quoted when it holds a comma or a quote.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Runs (or resumes, or skips when finished) run `index` of a prepared sweep, with
/// `threads` for its matrix products when given.
pub fn run_point(
    sweep: &Path,
    index: usize,
    threads: Option<usize>,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let grid_path = sweep.join(SWEEP_FILE);
    let grid = Grid::from_file(&grid_path)?;
    if index >= grid.len() {
        return Err(Error::config(
            "index",
            format!(
                "the sweep in {} has {} runs (0..={}); there is no run {index}",
                sweep.display(),
                grid.len(),
                grid.len().saturating_sub(1)
            ),
        ));
    }
    let dir = run_dir(sweep, index);
    if let Some(summary) = run::read_summary(&dir)? {
        return Ok(Outcome::AlreadyDone(summary));
    }
    let mut config = Config::from_file(&dir.join(run::CONFIG_FILE))?;
    if let Some(threads) = threads {
        config.threads = threads;
    }
    let summary = if dir.join(run::CHECKPOINT_FILE).exists() {
        run::resume_with(&dir, config, observer)?
    } else {
        run::start(config, &dir, observer)?
    };
    Ok(Outcome::Finished(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> Grid {
        Grid::parse(text, Path::new("test.toml")).unwrap()
    }

    /// Issue 22, defects 6 and 7: 64 two-value axes made a wrapping product of 0 runs (and
    /// `--array=0-18446744073709551615`); 10^6 points were written without a question. A
    /// grid over the limit, or one whose size overflows, is refused when read, naming the
    /// axes; one at the limit is read.
    #[test]
    fn grids_past_the_run_limit_are_refused() {
        let axes: String = (0..64).map(|k| format!("k{k} = [1, 2]\n")).collect();
        let err = Grid::parse(&format!("[grid]\n{axes}"), Path::new("huge.toml")).unwrap_err();
        assert!(err.to_string().contains("more than 10000 runs"), "{err}");
        let err = Grid::parse("[grid]\nseed = [1,2,3,4,5,6,7,8,9,10,11]\nlr = [1,2,3,4,5,6,7,8,9,10]\nbits = [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91]\n", Path::new("big.toml")).unwrap_err();
        assert!(err.to_string().contains("big.toml"), "{err}");
        let mut g = grid("[grid]\nseed = [1, 2]\n");
        let hundred: Vec<String> = (0..100).map(|v| v.to_string()).collect();
        g.apply_override(&format!("lr={}", hundred.join(",")))
            .unwrap();
        g.apply_override(&format!("steps={}", hundred.join(",")))
            .unwrap_err();
        assert_eq!(g.len(), 200);
    }

    #[test]
    fn expands_row_major_with_the_last_key_fastest() {
        let g = grid("steps = 3\n[grid]\nseed = [1, 2]\nbits = [4, 8]\n");
        let points = g.expand().unwrap();
        let seen: Vec<(u32, u64)> = points
            .iter()
            .map(|p| (p.config.bits(), p.config.seed))
            .collect();
        assert_eq!(seen, vec![(4, 1), (4, 2), (8, 1), (8, 2)]);
        assert!(points.iter().all(|p| p.config.steps == 3));
    }

    #[test]
    fn overrides_replace_axes_and_base_settings() {
        let mut g = grid("bits = 8\n[grid]\nseed = [1, 2]\n");
        g.apply_override("bits=2,3").unwrap();
        g.apply_override("model=hadamrnn").unwrap();
        g.apply_override("seed=5").unwrap();
        assert_eq!(g.len(), 2);
        assert!(!g.base.contains_key("bits"));
        assert_eq!(g.axes.len(), 1, "one value sets a key, not an axis");
        let points = g.expand().unwrap();
        assert_eq!(points[1].config.bits(), 3);
        assert_eq!(points[1].config.model, "hadamrnn".parse().unwrap());
        assert_eq!(points[1].config.seed, 5);
        // The file a sweep folder keeps reads back as the same grid.
        assert_eq!(Grid::parse(&g.to_toml(), Path::new("x")).unwrap(), g);
    }

    #[test]
    fn bad_grids_are_refused_with_the_key_or_run_named() {
        let empty = Grid::parse("[grid]\nbits = []\n", Path::new("g.toml")).unwrap_err();
        assert!(
            empty.to_string().contains("`bits` has an empty list"),
            "{empty}"
        );
        let unknown = grid("[grid]\nbitz = [2]\n").expand().unwrap_err();
        assert!(unknown.to_string().contains("bitz"), "{unknown}");
        let invalid = grid("[grid]\nbits = [4, 1]\n").expand().unwrap_err();
        assert!(invalid.to_string().contains("run 1 (bits=1)"), "{invalid}");
        let not_list = Grid::parse("[grid]\nbits = 4\n", Path::new("g.toml")).unwrap_err();
        assert!(not_list.to_string().contains("list"), "{not_list}");
        assert!(grid("").apply_override("bits").is_err());
    }

    #[test]
    fn a_folder_with_another_grid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = grid("steps = 2\n[grid]\nseed = [1, 2]\n");
        prepare(&g, dir.path()).unwrap();
        prepare(&g, dir.path()).unwrap();
        let csv = std::fs::read_to_string(dir.path().join(RUNS_FILE)).unwrap();
        assert_eq!(csv, "index,folder,seed\n0,0,1\n1,1,2\n");
        let other = grid("steps = 2\n[grid]\nseed = [1, 3]\n");
        let e = prepare(&other, dir.path()).unwrap_err();
        assert!(e.to_string().contains("different grid"), "{e}");
    }

    /// Issue 22: a symbolic link planted as a run folder (or the logs folder) of a sweep
    /// sent the run's files where it pointed. It is refused, naming it, before anything is
    /// written.
    #[cfg(unix)]
    #[test]
    fn symbolic_links_inside_a_sweep_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let sweep = dir.path().join("sweep");
        std::fs::create_dir(&sweep).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), sweep.join("1")).unwrap();
        let g = grid("steps = 2\n[grid]\nseed = [1, 2]\n");
        let e = prepare(&g, &sweep).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("sweep/1"), "{e}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        assert!(!sweep.join(SWEEP_FILE).exists());
    }
}
