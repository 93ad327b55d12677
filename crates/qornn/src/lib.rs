//! qornn: train, quantize and analyse quantized approximately orthogonal RNNs.
//!
//! Data flows one way: task -> batch -> model (parametrise, quantize, recur, read out)
//! -> loss -> backward -> optimiser -> metrics and checkpoint.

pub mod bjorck;
pub mod head;
pub mod linalg;
pub mod ornn;
pub mod projunn;
pub mod quant;
pub mod real;

pub use bjorck::{Bjorck, BjorckConfig, SpectralNorm};
pub use head::{Head, Readout, Targets};
pub use ornn::{Activation, CellGrads, CellParams, CellShape, OrnnCell};
pub use projunn::ProjUnnKind;
pub use quant::{Granularity, QuantizedTensor, Quantizer};
pub use real::Real;
