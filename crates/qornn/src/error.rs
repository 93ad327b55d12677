//! The one error type of the library: what was expected, what was found, where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid setting `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "training diverged at step {step}: {what}; nothing of this step was saved, and the \
         run folder keeps the checkpoint of the last evaluation (try a lower --lr or --clip)"
    )]
    Diverged { step: u64, what: String },
    #[error(
        "stopped at step {step} on request; the checkpoint in {} continues it (--resume)",
        dir.display()
    )]
    Interrupted { step: u64, dir: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
