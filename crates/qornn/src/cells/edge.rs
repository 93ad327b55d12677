//! What FastRNN and FastGRNN (EdgeML) share as the model's core: `W (n, d)` and
//! `U (n, n)`, each full or factored (`low_rank.rs`) and initialised `0.1 N(0, 1)`, ahead of
//! the cell's own biases and scalars; and the binding of the model's tensors to the cell.

use super::low_rank::InputAndRecurrent;
use super::recurrence::CellShape;
use super::{Cell, CellBuffers, CoreGrads, CoreWeights};
use crate::params::Tensor;
use crate::ModelSpec;
use faer::Par;
use rand::{Rng, RngCore};
use std::marker::PhantomData;

/// A cell of EdgeML's form: `W`, `U` and tensors of its own.
pub trait EdgeCell: Send + 'static {
    /// The cell's own tensors (after `W` and `U`), zero, for `n` hidden units.
    fn own_tensors(hidden: usize) -> Vec<Tensor>;
    /// EdgeML's initial value of one of them.
    fn init_own(t: &mut Tensor);
    fn with_shape(shape: CellShape) -> Self;
    /// The forward pass with `W`, `U` and the own tensors as used.
    fn run_forward(&mut self, w: &[f32], u: &[f32], own: &[&[f32]], x: &[f32], par: Par);
    /// The backward pass; adds into `dL/dW`, `dL/dU` and the own tensors' gradients.
    #[allow(clippy::too_many_arguments)]
    fn run_backward(
        &mut self,
        w_and_u: (&[f32], &[f32]),
        own: &[&[f32]],
        x: &[f32],
        dh: &[f32],
        grads_w_and_u: (&mut [f32], &mut [f32]),
        own_grads: &mut [Vec<f32>],
        grad_x: Option<&mut [f32]>,
        par: Par,
    );
    fn hidden_states(&self) -> &[f32];
    fn set_state(&mut self, state: &[f32]);
    fn state_into(&self, state: &mut [f32]);
}

/// The model's core around an EdgeML cell `C`.
pub struct EdgeCore<C> {
    hidden: usize,
    input: usize,
    matrices: InputAndRecurrent,
    cell: PhantomData<fn() -> C>,
}

impl<C: EdgeCell> EdgeCore<C> {
    pub fn new(spec: &ModelSpec) -> Self {
        Self {
            hidden: spec.hidden,
            input: spec.input,
            matrices: InputAndRecurrent::new(spec),
            cell: PhantomData,
        }
    }
}

impl<C: EdgeCell> Cell for EdgeCore<C> {
    fn tensors(&self) -> Vec<Tensor> {
        let mut t = self.matrices.tensors();
        t.extend(C::own_tensors(self.hidden));
        t
    }

    /// EdgeML's: the matrices `0.1 N(0, 1)`, the cell's own tensors as the cell says.
    fn init(&self, t: &mut Tensor, rng: &mut dyn RngCore) {
        match t.name {
            "W" | "U" | "W1" | "W2" | "U1" | "U2" => t
                .data
                .iter_mut()
                .for_each(|v| *v = 0.1 * rng.sample::<f32, _>(rand_distr::StandardNormal)),
            _ => C::init_own(t),
        }
    }

    fn state_width(&self) -> usize {
        self.hidden
    }

    fn buffers(&self, steps: usize, batch: usize) -> Box<dyn CellBuffers> {
        Box::new(EdgeBuffers {
            cell: C::with_shape(CellShape {
                hidden: self.hidden,
                input: self.input,
                steps,
                batch,
            }),
            matrices: self.matrices.with_buffers(),
        })
    }
}

struct EdgeBuffers<C> {
    cell: C,
    matrices: InputAndRecurrent,
}

impl<C: EdgeCell> CellBuffers for EdgeBuffers<C> {
    fn forward(&mut self, weights: &CoreWeights<'_>, x: &[f32], par: Par) {
        let t = &weights.tensors;
        let own = &t[self.matrices.rest()..];
        let (w, u) = self.matrices.compose(t, par);
        self.cell.run_forward(w, u, own, x, par);
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
        let t = &weights.tensors;
        let own = &t[self.matrices.rest()..];
        let cell = &mut self.cell;
        self.matrices
            .backward(t, grads.tensors, par, |w, u, gw, gu, own_grads| {
                cell.run_backward((w, u), own, x, dh, (gw, gu), own_grads, grad_x, par);
            });
    }

    fn outputs(&self) -> &[f32] {
        self.cell.hidden_states()
    }

    fn set_initial_state(&mut self, state: &[f32]) {
        self.cell.set_state(state)
    }

    fn final_state_into(&self, state: &mut [f32]) {
        self.cell.state_into(state)
    }
}
