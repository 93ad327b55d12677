//! From a trained model to integers, one file per step of `qornn quantize` and of what
//! follows it:
//! - `calibrate.rs`: activation ranges on training sequences, as power-of-two scales;
//! - `convert.rs`: the recurrence as integer codes, steps as `(mantissa, shift)`;
//! - `twin.rs`: the simulated twin, the fake-quantized model in `f64`;
//! - `engine/`: the batched SIMD integer engine over `qornn-infer`'s arithmetic (`mod.rs`),
//!   the lanes and code layouts its kernels share (`layout.rs`), the rescaling and
//!   activation (`finish.rs`), the int16-pair kernel (`pairs.rs`), the kernel for hidden
//!   codes of at most 8 bits (`bytes.rs`) and the one for block-diagonal W (`blocks.rs`);
//! - `integer_run.rs`: a test set through the engine and the twin;
//! - `model_file.rs` and `task_record.rs`: the `.qornn` file (`docs/format.md`);
//! - `export_c.rs`: C headers for the C library (`c/qornn.h`);
//! - `quantize.rs`: `qornn quantize` and `qornn eval --model`, which run the steps above.

pub mod calibrate;
pub mod convert;
pub mod engine;
pub mod export_c;
pub mod integer_run;
pub mod model_file;
pub mod quantize;
pub mod task_record;
pub mod twin;
