//! A run folder's lock: one process trains a run at a time. `run.lock` holds the id of the
//! process that trains the run; it is created exclusively and removed when the run stops.
//! A lock whose process is gone (a run killed with `kill -9`) is stale and taken over.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock's file in a run folder.
pub const LOCK_FILE: &str = "run.lock";

/// A held lock; dropping it removes the file.
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of the run folder `dir` (which exists), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        // Twice at most: once more after removing a stale lock.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    write!(file, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|text| text.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if process_alive(pid) => {
                            return Err(Error::config(
                                "out",
                                format!(
                                    "{} is in use by process {pid} (its {LOCK_FILE}); wait for \
                                     it to stop, or remove the file if that process is not a \
                                     qornn run",
                                    dir.display()
                                ),
                            ))
                        }
                        // Stale: its process is gone (or the file was never written).
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::config(
            "out",
            format!("{} could not be locked", dir.display()),
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` is running: its `/proc` entry on Linux; elsewhere every lock is
/// taken as held.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22, defect 10: two `qornn sweep` on one folder trained the same runs at once.
    /// A run folder is now locked by the process that trains it: a second one is refused,
    /// naming the holder; a stale lock is taken over; the lock goes with its holder.
    #[test]
    fn one_process_trains_a_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains(&format!("in use by process {}", std::process::id())),
            "{err}"
        );
        drop(held);
        assert!(!dir.path().join(LOCK_FILE).exists());
        // A lock left by a process that is gone (pid above Linux's largest).
        std::fs::write(dir.path().join(LOCK_FILE), "4294967").unwrap();
        if cfg!(target_os = "linux") {
            let taken = RunLock::acquire(dir.path()).unwrap();
            let pid = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
            assert_eq!(pid, std::process::id().to_string());
            drop(taken);
        }
    }
}
