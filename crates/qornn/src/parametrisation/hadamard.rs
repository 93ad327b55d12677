//! Hadamard recurrences (HadamRNN, Foucault, Malgouyres & Mamalet, ICLR 2025):
//! `W = diag(sign(v)) (I_{n/m} ⊗ H_m) / sqrt(m)`, with `H_m` the Sylvester Hadamard matrix
//! (`H_{2m} = [[H_m, H_m], [H_m, -H_m]]`, so `H_m[i][j] = (-1)^popcount(i & j)`).
//!
//! `W` is exactly orthogonal for every `v`: only the `n` signs are learned, through an
//! identity straight-through gradient on `sign` (no clipping mask), and `v` is clamped to
//! `[-1, 1]` after each step as in the authors' code. The cell applies `W` as
//! `diag(sign(v) / sqrt(m))` times the transform (`fwht_blocks`) and sums the gradient of
//! that row scale itself (`cells/recurrence.rs`). With `m = n` the entries are binary
//! (`±1/sqrt(n)`); with `m < n` they are ternary (`0, ±1/sqrt(m)`), `1 - m/n` of them zero.
//! `W h` costs `n log2 m` additions with the fast Walsh-Hadamard transform.

use crate::registry::{ModelEntry, ParametrisationContext};
/// The entry `(i, j)` of `I_{n/m} ⊗ H_m` (0 or ±1), shared with the integer runtime.
pub use qornn_infer::hadamard_entry;

/// `sign(v)` with `sign(0) = +1`, so that every row keeps a nonzero sign.
#[inline]
pub fn sign(v: f32) -> f32 {
    if v < 0.0 {
        -1.0
    } else {
        1.0
    }
}

/// Writes the dense `W = diag(sign(v)) (I ⊗ H_m) / sqrt(m)`, `(n, n)` row-major.
pub fn dense_into(v: &[f32], block: usize, w: &mut [f32]) {
    let n = v.len();
    assert_eq!(w.len(), n * n, "hadamard: W is not (n, n)");
    let scale = 1.0 / (block as f32).sqrt();
    for (i, row) in w.chunks_mut(n).enumerate() {
        let s = sign(v[i]) * scale;
        for (j, x) in row.iter_mut().enumerate() {
            *x = s * hadamard_entry(i, j, block) as f32;
        }
    }
}

/// How many of the signs differ between `before` and `after`.
pub fn sign_flips(before: &[f32], after: &[f32]) -> usize {
    before
        .iter()
        .zip(after)
        .filter(|(&a, &b)| sign(a) != sign(b))
        .count()
}

/// HadamRNN's parametrisation: the parameter is `v`, `(1, n)`; the cell applies
/// `diag(sign(v) / sqrt(m))` times the block Walsh-Hadamard transform.
pub struct HadamardParametrisation {
    n: usize,
    block: usize,
    /// `sign(v_i) / sqrt(m)`, `(n)`: what the cell applies.
    row_scale: Vec<f32>,
}

impl HadamardParametrisation {
    pub fn new(n: usize, block: usize) -> Self {
        Self {
            n,
            block,
            row_scale: vec![0.0; n],
        }
    }

    fn scale(&self) -> f32 {
        1.0 / (self.block as f32).sqrt()
    }
}

/// Binary exactly orthogonal recurrence (`m = n`); U at 4 bits unless `--bits`, the
/// authors' setting.
pub const HADAMRNN: ModelEntry = ModelEntry::elman("hadamrnn", Some(build_binary))
    .quantized(crate::registry::HADAMRNN_BITS)
    .checked(check_binary);

/// Ternary exactly orthogonal recurrence (`m = --block`).
pub const BLOCK_HADAMRNN: ModelEntry = ModelEntry::elman("block-hadamrnn", Some(build_block))
    .quantized(crate::registry::HADAMRNN_BITS)
    .checked(check_block);

fn build_binary(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(HadamardParametrisation::new(context.n, context.n))
}

fn build_block(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(HadamardParametrisation::new(context.n, context.block))
}

fn check_binary(config: &crate::registry::ModelSettings) -> crate::Result<()> {
    check(config, config.hidden)
}

fn check_block(config: &crate::registry::ModelSettings) -> crate::Result<()> {
    check(config, config.block)
}

/// `n` and the block `m` powers of two, `m` from 2 to `n`.
fn check(config: &crate::registry::ModelSettings, block: usize) -> crate::Result<()> {
    if !config.hidden.is_power_of_two() {
        return Err(crate::Error::config(
            "hidden",
            format!(
                "{} needs a power of two (a Sylvester Hadamard matrix), got {}",
                config.name, config.hidden
            ),
        ));
    }
    if block < 2 || !block.is_power_of_two() || !config.hidden.is_multiple_of(block) {
        return Err(crate::Error::config(
            "block",
            format!(
                "{block} is not a power of two from 2 to --hidden {}",
                config.hidden
            ),
        ));
    }
    Ok(())
}

impl super::RecurrentParametrisation for HadamardParametrisation {
    fn tensor(&self) -> crate::Tensor {
        crate::Tensor::zeros("weight_hh", 1, self.n, crate::Kind::Recurrent)
    }

    /// Xavier-uniform on a `(1, n)` tensor, as the authors.
    fn init(&self, param: &mut crate::Tensor, _init: crate::Init, rng: &mut dyn rand::RngCore) {
        use rand::Rng;
        let bound = (6.0 / (self.n as f32 + 1.0)).sqrt();
        param
            .data
            .iter_mut()
            .for_each(|v| *v = rng.gen_range(-bound..bound));
    }

    fn forward(&mut self, param: &[f32], _training: bool, w: &mut [f32], _par: faer::Par) {
        let scale = self.scale();
        for (r, &vi) in self.row_scale.iter_mut().zip(param) {
            *r = sign(vi) * scale;
        }
        dense_into(param, self.block, w)
    }

    fn recurrence<'a>(&'a self, _q_w: &'a [f32]) -> crate::Recurrence<'a, f32> {
        crate::Recurrence::Hadamard {
            row_scale: &self.row_scale,
            block: self.block,
        }
    }

    fn is_exact(&self) -> bool {
        true
    }

    fn hadamard_block(&self) -> Option<usize> {
        Some(self.block)
    }

    fn code_changes(&self, before: &[f32], after: &[f32]) -> Option<usize> {
        Some(sign_flips(before, after))
    }

    /// `sign(v_i) H_ij` with the step `1 / sqrt(m)`.
    fn exact_codes(&self, param: &[f32], bits: u32) -> Option<crate::QuantizedTensor<f32>> {
        let n = self.n;
        Some(crate::QuantizedTensor {
            rows: n,
            cols: n,
            bits,
            granularity: crate::Granularity::PerTensor,
            codes: (0..n * n)
                .map(|k| {
                    let (i, j) = (k / n, k % n);
                    sign(param[i]) as i32 * hadamard_entry(i, j, self.block)
                })
                .collect(),
            steps: vec![self.scale()],
        })
    }

    /// The cell left `dL/d row_scale` in the first `n` entries; `row_scale_i =
    /// sign(v_i) / sqrt(m)` with the identity straight-through gradient on `sign`.
    fn backward(
        &mut self,
        _param: &[f32],
        grad_applied: &[f32],
        grad: &mut [f32],
        _par: faer::Par,
    ) {
        let scale = self.scale();
        grad.iter_mut()
            .zip(&grad_applied[..self.n])
            .for_each(|(g, &d)| *g += d * scale);
    }

    /// The authors clamp `v` to `[-1, 1]` after each step.
    fn apply_step(&self, param: &mut [f32], delta: &[f32], _context: &super::StepContext) {
        param
            .iter_mut()
            .zip(delta)
            .for_each(|(p, d)| *p = (*p + d).clamp(-1.0, 1.0));
    }

    /// One sign bit per unit; the block size is part of the architecture.
    fn stored_bits(&self, param: &crate::Tensor, _bits: Option<u32>, _per_row: bool) -> u64 {
        param.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_matrix_is_orthogonal_and_matches_the_transform() {
        for (n, block) in [(8, 8), (16, 4), (32, 2), (64, 64)] {
            let v: Vec<f32> = (0..n)
                .map(|i| if (i * 7) % 3 == 0 { -0.3 } else { 0.2 })
                .collect();
            let mut w = vec![0.0; n * n];
            dense_into(&v, block, &mut w);
            let defect = crate::linalg::orthogonality_defect(&w, n);
            assert!(defect < 1e-5, "n {n} block {block}: {defect}");
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut fast = x.clone();
            crate::cells::recurrence::fwht_blocks(&mut fast, block);
            let scale = 1.0 / (block as f32).sqrt();
            for i in 0..n {
                let dense: f32 = (0..n).map(|j| w[i * n + j] * x[j]).sum();
                let via_transform = sign(v[i]) * scale * fast[i];
                assert!(
                    (dense - via_transform).abs() < 1e-5,
                    "{dense} {via_transform}"
                );
            }
        }
    }

    #[test]
    fn sign_flips_count_changed_signs() {
        assert_eq!(sign_flips(&[1.0, -1.0, 0.5], &[-1.0, -2.0, 0.0]), 1);
    }
}
