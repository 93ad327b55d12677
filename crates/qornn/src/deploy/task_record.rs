//! The task record of a `.qornn` file: which task the model was trained on, so that
//! `qornn eval --model` can rebuild its test set.

use crate::error::{Error, Result};
use crate::tasks::Task;
use qornn_infer::format::TaskInfo;
use std::path::Path;

/// The task record of a `.qornn` file, for the tasks integer inference covers.
pub fn task_info(task: &Task, config: &crate::config::Config) -> Result<TaskInfo> {
    let (kind, parameter) = match task {
        Task::Copy(t) => (0, t.delay as u32),
        Task::Adding(t) => (1, t.length as u32),
        Task::Mnist(t) => (if t.permuted { 3 } else { 2 }, 0),
        _ => {
            return Err(Error::config(
                "run",
                format!(
                    "integer inference of the {} task is not supported",
                    task.name()
                ),
            ))
        }
    };
    Ok(TaskInfo {
        kind,
        parameter,
        seed: config.seed,
        sequences: config.eval_sequences as u32,
        batch: config.batch as u32,
    })
}

/// The task a `.qornn` file was trained on (MNIST is read from `data_dir`).
pub fn task_of(info: &TaskInfo, data_dir: Option<&Path>) -> Result<Task> {
    use crate::data::{data_dir as resolve, mnist::Mnist, Checksums};
    Ok(match info.kind {
        0 => Task::Copy(crate::tasks::CopyTask::new(info.parameter.max(1) as usize)),
        1 => Task::Adding(crate::tasks::AddingTask::new(info.parameter.max(2) as usize)),
        2 | 3 => Task::Mnist(crate::tasks::MnistTask::new(
            Mnist::load(&resolve(data_dir), Checksums::Verify)?,
            info.kind == 3,
        )),
        other => {
            return Err(Error::config(
                "model",
                format!("unknown task id {other} in the model file"),
            ))
        }
    })
}
