//! qornn: train, quantize and analyse quantized approximately orthogonal RNNs.
//!
//! Data flows one way: task -> batch -> model (parametrise, quantize, recur, read out)
//! -> loss -> backward -> optimiser -> metrics and checkpoint.

pub mod cells;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod deploy;
pub mod distill;
pub mod error;
pub mod evaluate;
pub mod head;
pub mod init;
pub mod linalg;
pub mod lock;
pub mod model;
pub mod optim;
pub mod parametrisation;
pub mod params;
pub mod quant;
pub mod real;
pub mod registry;
pub mod report;
pub mod run;
pub mod subnormal;
pub mod sweep;
pub mod tasks;
pub mod train;
pub mod weights;

pub use cells::ornn::{Activation, CellGrads, CellParams, OrnnCell};
pub use cells::recurrence::{CellShape, FusedKernel, Recurrence};
pub use error::{Error, Result};
pub use head::{Head, Readout, Targets};
pub use init::Init;
pub use model::{Model, ModelSpec, Workspace};
pub use parametrisation::bjorck::{Bjorck, BjorckConfig, SpectralNorm};
pub use parametrisation::projunn::ProjUnnKind;
pub use params::{Kind, Tensor};
pub use quant::{Granularity, QuantizedTensor, Quantizer};
pub use real::Real;
pub use tasks::{Batch, Task};
