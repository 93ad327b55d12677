//! Checkpoints: one safetensors file with the parameters (PyTorch-style names), the
//! optimiser moments, the power-iteration vector, and the step and bookkeeping in its
//! string metadata. Written to a temporary file, synced, then renamed: a run killed at
//! any moment leaves either the old checkpoint or the new one, never half of one.

use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::optim::Moments;
use crate::params::Tensor;
use crate::tasks::Task;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

const FORMAT: &str = "qornn-checkpoint";
const VERSION: &str = "1";

/// The checkpoint tensor of `Checkpoint::recurrent_at_last_eval`.
const LAST_EVAL_RECURRENT: &str = "eval.recurrent";

/// Everything needed to continue a run exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Training steps completed.
    pub step: u64,
    pub params: Vec<Tensor>,
    /// The recurrent parametrisation's state, with its name (Björck's persistent
    /// power-iteration vector, `spectral.u`).
    pub parametrisation_state: Option<(&'static str, Vec<f32>)>,
    /// Language models: the hidden state carried into the next batch, `(B, n)`.
    pub carried_state: Option<Vec<f32>>,
    /// An exact W (Hadamard signs, rotation angles): the recurrent parameter at the last
    /// evaluation, where it differs from `params[0]` (a checkpoint written between two
    /// evaluations), so that a resumed run counts W's code changes from there.
    pub recurrent_at_last_eval: Option<Vec<f32>>,
    /// One per tensor of `params`.
    pub moments: Vec<Moments>,
    pub updates: u64,
    /// The run's configuration (`config.toml`) when it was written; `None` in checkpoints
    /// of earlier versions. A resumed run must match it (`run::resume_with`).
    pub config: Option<String>,
    pub best_val_loss: f64,
    pub best_step: u64,
    /// Wall time spent training before this checkpoint.
    pub seconds: f64,
    /// Mean training loss accumulated since the last evaluation, and its count.
    pub pending_loss: f64,
    pub pending_count: u64,
}

/// A checkpoint's parametrisation state without its name, as `Model::from_params` takes it.
pub fn state_values(state: Option<(&'static str, Vec<f32>)>) -> Option<Vec<f32>> {
    state.map(|(_, values)| values)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::other("is a folder; give a file name to write"),
        ));
    }
    let tmp = temporary_beside(path);
    let written = (|| {
        // create_new: never truncate (or follow a link at) a file that is already there.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    // rename replaces `path` itself (a link there too), never what a link points to.
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A temporary name in `path`'s folder that no other file or writer uses:
/// `.NAME.PID.N.tmp`, N counting this process's writes.
fn temporary_beside(path: &Path) -> std::path::PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    // A checkpoint on disk is always one a run can resume from: a non-finite tensor is
    // refused before anything is written, and the file there stays as it was.
    let state = ckpt.parametrisation_state.iter().map(|(n, v)| (*n, &v[..]));
    let values = ckpt.params.iter().map(|t| (t.name, &t.data[..]));
    if let Some((name, _)) = values
        .chain(state)
        .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
    {
        return Err(Error::config(
            "checkpoint",
            format!(
                "{name} is not finite at step {}; {} was left as it was",
                ckpt.step,
                path.display()
            ),
        ));
    }
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (t, m) in ckpt.params.iter().zip(&ckpt.moments) {
        let (name, shape) = (t.name, vec![t.rows, t.cols]);
        named.push((format!("param.{name}"), shape.clone(), f32_bytes(&t.data)));
        named.push((format!("optim.m.{name}"), shape.clone(), f32_bytes(&m.m)));
        named.push((format!("optim.v.{name}"), shape, f32_bytes(&m.v)));
    }
    if let Some((name, u)) = &ckpt.parametrisation_state {
        named.push((name.to_string(), vec![u.len()], f32_bytes(u)));
    }
    if let Some(h) = &ckpt.carried_state {
        named.push(("state.h".into(), vec![h.len()], f32_bytes(h)));
    }
    if let Some(w) = &ckpt.recurrent_at_last_eval {
        named.push((LAST_EVAL_RECURRENT.into(), vec![w.len()], f32_bytes(w)));
    }
    let views: Vec<(String, TensorView<'_>)> = named
        .iter()
        .map(|(k, shape, bytes)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches bytes"),
            )
        })
        .collect();
    let mut meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("version", VERSION.to_string()),
        ("step", ckpt.step.to_string()),
        ("updates", ckpt.updates.to_string()),
        ("best_val_loss", format!("{:e}", ckpt.best_val_loss)),
        ("best_step", ckpt.best_step.to_string()),
        ("seconds", format!("{:e}", ckpt.seconds)),
        ("pending_loss", format!("{:e}", ckpt.pending_loss)),
        ("pending_count", ckpt.pending_count.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(config) = &ckpt.config {
        meta.insert("config".into(), config.clone());
    }
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::bad_file(path, format!("cannot serialise checkpoint: {e}")))?;
    write_atomically(path, &bytes)
}

/// Reads a checkpoint and checks it against the model it must fit.
pub fn load(path: &Path, spec: &ModelSpec) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path, spec)
}

/// A checkpoint's bytes, checked against the model it must fit; errors name `path`.
pub fn parse(bytes: &[u8], path: &Path, spec: &ModelSpec) -> Result<Checkpoint> {
    let bad = |reason: String| Error::bad_file(path, reason);
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("corrupt or truncated checkpoint ({e})")))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("corrupt header ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(
            "not a qornn checkpoint (metadata `format` is missing)".into()
        ));
    }
    if meta.get("version").map(String::as_str) != Some(VERSION) {
        return Err(bad(format!(
            "checkpoint version {:?}, this qornn reads version {VERSION}",
            meta.get("version")
        )));
    }
    let number = |key: &str| -> Result<f64> {
        meta.get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| !v.is_nan())
            .ok_or_else(|| bad(format!("metadata `{key}` is missing or not a number")))
    };
    // A count is a whole number that a run can reach (below 2^53, exact in the f64 of
    // metrics): `step = 1e30` would skip training and report success.
    let count = |key: &str| -> Result<u64> {
        meta.get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&v| v < 1 << 53)
            .ok_or_else(|| bad(format!("metadata `{key}` is missing or not a count")))
    };
    let non_negative = |key: &str, infinite_ok: bool| -> Result<f64> {
        let v = number(key)?;
        if v < 0.0 || (v.is_infinite() && !infinite_ok) {
            return Err(bad(format!(
                "metadata `{key}` is {v}, not a non-negative number"
            )));
        }
        Ok(v)
    };
    let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let view = st
            .tensor(name)
            .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            return Err(bad(format!(
                "tensor `{name}` should be f32 of shape {shape:?}, is {:?} {:?}",
                view.dtype(),
                view.shape()
            )));
        }
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(bad(format!("tensor `{name}` holds NaN or infinite values")));
        }
        Ok(v)
    };
    let mut params = spec.tensors();
    let mut moments = Vec::new();
    for t in params.iter_mut() {
        let (name, shape) = (t.name, [t.rows, t.cols]);
        t.data = tensor(&format!("param.{name}"), &shape)?;
        moments.push(Moments {
            m: tensor(&format!("optim.m.{name}"), &shape)?,
            v: tensor(&format!("optim.v.{name}"), &shape)?,
        });
    }
    let parametrisation_state = match spec.parametrisation().and_then(|p| p.state_layout()) {
        Some((name, len)) => Some((name, tensor(name, &[len])?)),
        None => None,
    };
    let carried_state = match st.tensor("state.h") {
        Ok(view) => Some(tensor("state.h", &[view.data().len() / 4])?),
        Err(_) => None,
    };
    let recurrent_at_last_eval = match st.tensor(LAST_EVAL_RECURRENT) {
        Ok(_) => Some(tensor(LAST_EVAL_RECURRENT, &[params[0].len()])?),
        Err(_) => None,
    };
    let (step, best_step) = (count("step")?, count("best_step")?);
    if best_step > step {
        return Err(bad(format!(
            "metadata `best_step` {best_step} is after `step` {step}"
        )));
    }
    Ok(Checkpoint {
        step,
        params,
        parametrisation_state,
        carried_state,
        recurrent_at_last_eval,
        moments,
        updates: count("updates")?,
        config: meta.get("config").cloned(),
        best_val_loss: non_negative("best_val_loss", true)?,
        best_step,
        seconds: non_negative("seconds", false)?,
        pending_loss: non_negative("pending_loss", false)?,
        pending_count: count("pending_count")?,
    })
}

/// A run folder's best model (by validation loss).
pub const BEST_FILE: &str = "best.safetensors";

/// The tensors of the best model of the run in `dir`. Their shapes follow from its config
/// and its task; `task`, when given and the same task as the run's, stands for the run's,
/// so that its data are neither loaded again nor looked for where the run's config says (a
/// run folder copied from another machine names a data folder that is not there).
pub fn best_weights(dir: &Path, task: Option<&Task>) -> Result<Vec<Tensor>> {
    let config = crate::config::Config::from_file(&dir.join(crate::config::CONFIG_FILE))?;
    config.validate()?;
    let loaded;
    let task = match task {
        Some(task) if task.name() == config.task.as_str() => task,
        _ => {
            loaded = config.task()?;
            &loaded
        }
    };
    Ok(load(&dir.join(BEST_FILE), &config.model_spec_for(task))?.params)
}

#[cfg(test)]
mod tests {
    use super::write_atomically;

    /// Issue 22, defect 11: the temporary was `path.with_extension("tmp")`, so writing
    /// `m.qornn` destroyed an unrelated `m.tmp`, and `--output /tmp` wrote `/tmp.tmp`. Now the
    /// temporary is unique and hidden, a folder is refused as output, and a link planted at
    /// the target is replaced, not followed.
    #[test]
    fn atomic_writes_touch_nothing_but_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let unrelated = dir.path().join("m.tmp");
        std::fs::write(&unrelated, b"keep me").unwrap();
        let target = dir.path().join("m.qornn");
        write_atomically(&target, b"model").unwrap();
        assert_eq!(std::fs::read(&unrelated).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&target).unwrap(), b"model");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary left: {names:?}");

        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        let err = write_atomically(&folder, b"x").unwrap_err().to_string();
        assert!(err.contains("folder"), "{err}");
        assert!(folder.is_dir());

        #[cfg(unix)]
        {
            let elsewhere = dir.path().join("elsewhere");
            std::fs::write(&elsewhere, b"not yours").unwrap();
            let link = dir.path().join("link.json");
            std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
            write_atomically(&link, b"mine").unwrap();
            assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not yours");
            assert_eq!(std::fs::read(&link).unwrap(), b"mine");
        }
    }
}
