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

/// The task of an integer model's file, checked against the model: its input size,
/// outputs and read-out (last step or every step) must be the task's, or every metric
/// (and a C trace) would be computed on the wrong shapes.
pub fn task_of_model(
    model: &super::model_file::IntegerModel,
    data_dir: Option<&Path>,
) -> Result<Task> {
    let task = task_of(&model.task, data_dir)?;
    let found = (model.recurrence.input, model.outputs, model.readout);
    let expected = (task.input_size(), task.output_size(), task.readout());
    if found != expected {
        return Err(Error::config(
            "model",
            format!(
                "the model (input {}, {} outputs, read-out {:?}) does not fit the {} task its \
                 file records (input {}, {} outputs, read-out {:?})",
                found.0,
                found.1,
                found.2,
                task.name(),
                expected.0,
                expected.1,
                expected.2
            ),
        ));
    }
    Ok(task)
}

/// The longest copy delay or adding length a task record may ask for.
pub const MAX_TASK_LENGTH: u32 = 100_000;

/// The most memory the test set a task record describes may take: a record is a few
/// bytes that a flipped bit can turn into a request for terabytes.
pub const MAX_EVAL_BYTES: u64 = 4 << 30;

/// The task a `.qornn` file was trained on (MNIST is read from `data_dir`), after checking
/// that its record describes a test set of a sane size.
pub fn task_of(info: &TaskInfo, data_dir: Option<&Path>) -> Result<Task> {
    use crate::data::{data_dir as resolve, mnist::Mnist, Checksums};
    let length = |least: u32, what: &str| -> Result<usize> {
        if (least..=MAX_TASK_LENGTH).contains(&info.parameter) {
            Ok(info.parameter as usize)
        } else {
            Err(Error::config(
                "model",
                format!(
                    "the model file's task record gives a {what} of {}, outside {least}..={MAX_TASK_LENGTH}",
                    info.parameter
                ),
            ))
        }
    };
    if info.sequences == 0 || info.batch == 0 {
        return Err(Error::config(
            "model",
            "the model file's task record gives an evaluation batch or sequence count of 0",
        ));
    }
    let task = match info.kind {
        0 => Task::Copy(crate::tasks::CopyTask::new(length(1, "copy delay")?)),
        1 => Task::Adding(crate::tasks::AddingTask::new(length(2, "adding length")?)),
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
    };
    // A generated test set is drawn in whole batches (a run with fewer sequences than a
    // batch evaluated one whole batch), so its size is the sequences rounded up to a batch.
    let drawn = match task {
        Task::Mnist(_) => info.sequences as u64,
        _ => (info.sequences as u64).div_ceil(info.batch as u64) * info.batch as u64,
    };
    let bytes = drawn * task.steps() as u64 * task.input_size() as u64 * 4;
    if bytes > MAX_EVAL_BYTES {
        return Err(Error::config(
            "model",
            format!(
                "the model file's task record asks for {} test sequences of {} steps in batches \
                 of {}, {:.1} GiB of inputs (at most {} GiB)",
                info.sequences,
                task.steps(),
                info.batch,
                bytes as f64 / (1u64 << 30) as f64,
                MAX_EVAL_BYTES >> 30
            ),
        ));
    }
    Ok(task)
}

/// The first test batch of the recorded task (the one `qornn export --c` traces), built
/// alone: the rest of the test set is never generated or loaded into batches.
pub fn first_test_batch(task: &Task, record: &TaskInfo) -> Option<crate::tasks::Batch> {
    let batch = record.batch as usize;
    let sequences = (record.sequences as usize).min(batch);
    task.eval_batches(true, batch, sequences, record.seed)
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run evaluated with fewer sequences than a batch (`--eval-sequences 32`, batch 128)
    /// drew one whole batch; its record is accepted (it was refused, so that `qornn export`
    /// failed on the file `qornn quantize` had just written) and its first test batch is
    /// that batch.
    #[test]
    fn a_record_with_fewer_sequences_than_a_batch_is_read() {
        use crate::tasks::CopyTask;
        let record = TaskInfo {
            kind: 0,
            parameter: 20,
            seed: 3,
            sequences: 32,
            batch: 128,
        };
        let task = task_of(&record, None).unwrap();
        let first = first_test_batch(&task, &record).unwrap();
        let run = Task::Copy(CopyTask::new(20)).eval_batches(true, 128, 32, 3);
        assert_eq!(first.batch, 128);
        assert_eq!((&first.x, &first.targets), (&run[0].x, &run[0].targets));
    }

    /// Issue 22, defect 21: `qornn export` built the whole test set to trace one sequence.
    /// The first batch built alone is the whole set's first batch.
    #[test]
    fn the_first_test_batch_is_built_alone_and_equals_the_whole_sets_first() {
        use crate::tasks::{AddingTask, CopyTask};
        for task in [
            Task::Copy(CopyTask::new(20)),
            Task::Adding(AddingTask::new(30)),
        ] {
            let record = TaskInfo {
                kind: 0,
                parameter: 0,
                seed: 7,
                sequences: 1000,
                batch: 64,
            };
            let first = first_test_batch(&task, &record).unwrap();
            let whole = task.eval_batches(true, 64, 1000, 7);
            assert_eq!(whole.len(), 16);
            assert_eq!(first.batch, 64);
            assert_eq!((&first.x, &first.targets), (&whole[0].x, &whole[0].targets));
        }
    }

    /// Issue 22, defects 4 and 19: a task record's copy delay, adding length, sequence count
    /// and batch were used as they came (a flipped bit allocated gigabytes to terabytes; a
    /// delay of 0 was evaluated at 1). Each is refused now, naming what is wrong.
    /// Issue 22, defect 5: a model whose sizes disagree with its recorded task panicked on
    /// an index or gave silently wrong metrics. It is refused, naming both shapes.
    #[test]
    fn a_model_that_does_not_fit_its_task_is_refused() {
        use crate::deploy::convert::{FloatRecurrence, QuantizedRecurrence};
        use crate::deploy::model_file::IntegerModel;
        let (n, d, c) = (4, 10, 9);
        let zeros = |len: usize| vec![0.1f32; len];
        let (w, u, b) = (zeros(n * n), zeros(n * d), zeros(n));
        let model = |input: usize, outputs: usize| IntegerModel {
            recurrence: QuantizedRecurrence::new(&FloatRecurrence {
                hidden: n,
                input,
                w: &w,
                u: &u[..n * input],
                bias: &b,
                bias_mod: None,
                weight_bits: 4,
                range: crate::quant::RangeRule::Max,
                act_bits: 8,
                hidden_frac: 4,
                input_frac: 6,
            }),
            outputs,
            readout: crate::head::Readout::Every,
            readout_weight: zeros(outputs * n),
            readout_bias: zeros(outputs),
            readout_codes: None,
            task: TaskInfo {
                kind: 0,
                parameter: 10,
                seed: 1,
                sequences: 8,
                batch: 8,
            },
            float_loss: 0.0,
            float_accuracy: 0.0,
        };
        assert!(task_of_model(&model(d, c), None).is_ok());
        for (input, outputs) in [(3, c), (d, 4)] {
            let err = task_of_model(&model(input, outputs), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("does not fit the copy task"), "{err}");
        }
    }

    #[test]
    fn task_records_that_describe_no_sane_test_set_are_refused() {
        let good = TaskInfo {
            kind: 0,
            parameter: 10,
            seed: 1,
            sequences: 64,
            batch: 32,
        };
        assert!(task_of(&good, None).is_ok());
        for (record, needle) in [
            (
                TaskInfo {
                    parameter: 0,
                    ..good
                },
                "copy delay of 0",
            ),
            (
                TaskInfo {
                    parameter: 1 << 31,
                    ..good
                },
                "copy delay",
            ),
            (
                TaskInfo {
                    kind: 1,
                    parameter: 1,
                    ..good
                },
                "adding length of 1",
            ),
            (
                TaskInfo {
                    sequences: u32::MAX,
                    batch: 128,
                    ..good
                },
                "GiB",
            ),
            // A batch far above the sequences is drawn whole: bounded like the sequences.
            (
                TaskInfo {
                    batch: u32::MAX,
                    ..good
                },
                "GiB",
            ),
        ] {
            let err = task_of(&record, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
