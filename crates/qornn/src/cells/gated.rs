//! What the LSTM and the GRU share: PyTorch's parameter layout with `g` gates,
//! `weight_ih (g n, d)`, `weight_hh (g n, n)`, `bias_ih (g n)`, `bias_hh (g n)`, its
//! initialisation (uniform in `±1/sqrt(n)`) and the binding of the model's tensors to the
//! cell.

use super::recurrence::CellShape;
use super::{Cell, CellBuffers, CoreGrads, CoreWeights};
use crate::params::{Kind, Tensor};
use crate::ModelSpec;
use faer::Par;
use rand::{Rng, RngCore};
use std::marker::PhantomData;

/// A gated cell's parameters as the recurrence sees them.
pub struct GateParams<'a, T> {
    pub weight_ih: &'a [T],
    pub weight_hh: &'a [T],
    pub bias_ih: &'a [T],
    pub bias_hh: &'a [T],
}

/// Their gradients; `backward` adds into them.
pub struct GateGrads<'a, T> {
    pub weight_ih: &'a mut [T],
    pub weight_hh: &'a mut [T],
    pub bias_ih: &'a mut [T],
    pub bias_hh: &'a mut [T],
}

/// A cell in PyTorch's gated layout (`lstm.rs`, `gru.rs`).
pub trait GatedCell: Send + 'static {
    /// Gates per unit (`g`).
    const GATES: usize;
    /// `(B, n)` states carried from one batch to the next.
    const STATES: usize;
    fn with_shape(shape: CellShape) -> Self;
    fn run_forward(&mut self, p: &GateParams<'_, f32>, x: &[f32], par: Par);
    fn run_backward(
        &mut self,
        p: &GateParams<'_, f32>,
        x: &[f32],
        dh: &[f32],
        g: &mut GateGrads<'_, f32>,
        grad_x: Option<&mut [f32]>,
        par: Par,
    );
    fn hidden_states(&self) -> &[f32];
    fn set_state(&mut self, state: &[f32]);
    fn state_into(&self, state: &mut [f32]);
}

/// The model's core around a gated cell `C`.
pub struct GatedCore<C> {
    hidden: usize,
    input: usize,
    cell: PhantomData<fn() -> C>,
}

impl<C: GatedCell> GatedCore<C> {
    pub fn new(spec: &ModelSpec) -> Self {
        Self {
            hidden: spec.hidden,
            input: spec.input,
            cell: PhantomData,
        }
    }
}

impl<C: GatedCell> Cell for GatedCore<C> {
    fn tensors(&self) -> Vec<Tensor> {
        let (g, n, d) = (C::GATES, self.hidden, self.input);
        vec![
            Tensor::zeros("weight_ih_l0", g * n, d, Kind::Quantized),
            Tensor::zeros("weight_hh_l0", g * n, n, Kind::Quantized),
            Tensor::zeros("bias_ih_l0", 1, g * n, Kind::Float),
            Tensor::zeros("bias_hh_l0", 1, g * n, Kind::Float),
        ]
    }

    /// PyTorch's: every tensor uniform in `±1/sqrt(n)`.
    fn init(&self, t: &mut Tensor, rng: &mut dyn RngCore) {
        let bound = 1.0 / (self.hidden as f32).sqrt();
        t.data
            .iter_mut()
            .for_each(|v| *v = rng.gen_range(-bound..bound));
    }

    fn state_width(&self) -> usize {
        C::STATES * self.hidden
    }

    fn buffers(&self, steps: usize, batch: usize) -> Box<dyn CellBuffers> {
        Box::new(GatedBuffers(C::with_shape(CellShape {
            hidden: self.hidden,
            input: self.input,
            steps,
            batch,
        })))
    }
}

struct GatedBuffers<C>(C);

fn gate_params<'a>(weights: &CoreWeights<'a>) -> GateParams<'a, f32> {
    let t = &weights.tensors;
    GateParams {
        weight_ih: t[0],
        weight_hh: t[1],
        bias_ih: t[2],
        bias_hh: t[3],
    }
}

impl<C: GatedCell> CellBuffers for GatedBuffers<C> {
    fn forward(&mut self, weights: &CoreWeights<'_>, x: &[f32], par: Par) {
        self.0.run_forward(&gate_params(weights), x, par);
    }

    fn backward(
        &mut self,
        weights: &CoreWeights<'_>,
        x: &[f32],
        dh: &[f32],
        grads: CoreGrads<'_>,
        grad_x: Option<&mut [f32]>,
        par: Par,
    ) {
        let [weight_ih, weight_hh, bias_ih, bias_hh] = grads
            .tensors
            .get_disjoint_mut([0, 1, 2, 3])
            .expect("distinct indices");
        let mut g = GateGrads {
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
        };
        self.0
            .run_backward(&gate_params(weights), x, dh, &mut g, grad_x, par);
    }

    fn outputs(&self) -> &[f32] {
        self.0.hidden_states()
    }

    fn set_initial_state(&mut self, state: &[f32]) {
        self.0.set_state(state)
    }

    fn final_state_into(&self, state: &mut [f32]) {
        self.0.state_into(state)
    }
}

/// Implements [`GatedCell`] for a cell type with the usual inherent methods.
macro_rules! gated_cell {
    ($cell:ident, $gates:expr, $states:expr) => {
        impl $crate::cells::gated::GatedCell for $cell<f32> {
            const GATES: usize = $gates;
            const STATES: usize = $states;
            fn with_shape(shape: CellShape) -> Self {
                Self::new(shape)
            }
            fn run_forward(
                &mut self,
                p: &$crate::cells::gated::GateParams<'_, f32>,
                x: &[f32],
                par: Par,
            ) {
                self.forward(p, x, par)
            }
            fn run_backward(
                &mut self,
                p: &$crate::cells::gated::GateParams<'_, f32>,
                x: &[f32],
                dh: &[f32],
                g: &mut $crate::cells::gated::GateGrads<'_, f32>,
                grad_x: Option<&mut [f32]>,
                par: Par,
            ) {
                self.backward(p, x, dh, g, grad_x, par)
            }
            fn hidden_states(&self) -> &[f32] {
                self.outputs()
            }
            fn set_state(&mut self, state: &[f32]) {
                self.set_initial_state(state)
            }
            fn state_into(&self, state: &mut [f32]) {
                self.final_state_into(state)
            }
        }
    };
}
pub(crate) use gated_cell;
