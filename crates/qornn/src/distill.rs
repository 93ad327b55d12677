//! Knowledge distillation (Hinton, Vinyals and Dean 2015): a trained run's best model as
//! the teacher of a quantized student (`qornn train --teacher RUN`). Each training batch
//! runs through the teacher too, and the student's loss mixes the labels' cross-entropy
//! with the teacher's softened class probabilities:
//!
//! `L = (1 - a) CE(y, softmax(z)) + a tau^2 KL(softmax(t / tau) || softmax(z / tau))`
//!
//! (`z` the student's logits, `t` the teacher's, `a` = distill_weight, `tau` =
//! distill_temperature; `tau^2` keeps the soft term's gradient the size of the hard one's
//! as `tau` grows, Hinton et al. section 2). Validation and test losses stay the plain
//! cross-entropy.

use crate::checkpoint::{self, BEST_FILE};
use crate::config::{Config, CONFIG_FILE};
use crate::error::{Error, Result};
use crate::evaluate::Workspaces;
use crate::model::Model;
use crate::tasks::{Batch, Task};
use crate::Real;
use faer::Par;
use std::path::Path;

/// The best model of a finished (or interrupted) run, evaluated as that run evaluated it:
/// its weight quantizer at the width of its best step, its activations quantized when they
/// were then.
pub struct Teacher {
    model: Model,
    workspaces: Workspaces,
}

impl Teacher {
    /// The best model of the run in `dir`, which must have been trained on `task` (its
    /// tensors' shapes follow from `task`, whose data are not loaded again).
    pub fn load(dir: &Path, task: &Task) -> Result<Self> {
        let config = Config::from_file(&dir.join(CONFIG_FILE))?;
        config.validate()?;
        if config.task.as_str() != task.name() {
            return Err(Error::config(
                "teacher",
                format!(
                    "{} was trained on {}, this run is {}",
                    dir.display(),
                    config.task,
                    task.name()
                ),
            ));
        }
        let spec = config.model_spec_for(task);
        let best = checkpoint::load(&dir.join(BEST_FILE), &spec)?;
        let (bits, quantized_activations) = config.arithmetic_after(best.step);
        let mut model = Model::from_params(
            spec,
            best.params,
            checkpoint::state_values(best.parametrisation_state),
        );
        if let Some(q) = &mut model.spec.quantizer {
            q.bits = bits;
        }
        model.parametrise(false, Par::Seq);
        model.quantize_activations = quantized_activations;
        Ok(Self {
            model,
            workspaces: Workspaces::default(),
        })
    }

    /// The teacher's logits on `batch`, laid out like the student's.
    pub fn logits(&mut self, batch: &Batch, par: Par) -> &[f32] {
        let ws = self
            .workspaces
            .get(&self.model.spec, batch.steps, batch.batch);
        self.model.forward(ws, batch, par);
        ws.head.logits()
    }
}

/// The module's distillation loss `L`, mean over rows, for `logits` and `teacher` of
/// `(rows, classes)` and class labels `y`; writes its gradient with respect to `logits`
/// into `dlogits`:
///
/// `dL/dz = ((1 - a) (softmax(z) - onehot(y)) + a tau (softmax(z / tau) - softmax(t / tau))) / rows`
pub fn distillation_loss<T: Real>(
    logits: &[T],
    teacher: &[T],
    classes: usize,
    y: &[usize],
    weight: f64,
    temperature: f64,
    dlogits: &mut [T],
) -> T {
    let rows = y.len();
    assert_eq!(
        logits.len(),
        rows * classes,
        "distillation: logits vs targets"
    );
    assert_eq!(
        teacher.len(),
        logits.len(),
        "distillation: teacher vs student"
    );
    let inv_rows = 1.0 / rows as f64;
    let mut total = 0.0f64;
    // One row's logits in float64 (z, t) and its three distributions, reused row by row.
    let [mut z, mut t, mut hard, mut soft, mut target] =
        std::array::from_fn(|_| vec![0.0f64; classes]);
    for (((row, trow), drow), &yi) in logits
        .chunks(classes)
        .zip(teacher.chunks(classes))
        .zip(dlogits.chunks_mut(classes))
        .zip(y)
    {
        for ((zi, ti), (&r, &tr)) in z.iter_mut().zip(t.iter_mut()).zip(row.iter().zip(trow)) {
            (*zi, *ti) = (
                r.to_f64().unwrap_or(f64::NAN),
                tr.to_f64().unwrap_or(f64::NAN),
            );
        }
        let log_z = log_softmax(&z, 1.0, &mut hard);
        let log_zt = log_softmax(&z, temperature, &mut soft);
        let log_t = log_softmax(&t, temperature, &mut target);
        // KL(p_t || p_z) = sum_i p_t,i (ln p_t,i - ln p_z,i), on the softened distributions.
        let kl: f64 = (0..classes)
            .map(|i| target[i] * ((t[i] / temperature - log_t) - (z[i] / temperature - log_zt)))
            .sum();
        total += (1.0 - weight) * (log_z - z[yi]) + weight * temperature * temperature * kl;
        for (i, d) in drow.iter_mut().enumerate() {
            let onehot = if i == yi { 1.0 } else { 0.0 };
            let g =
                (1.0 - weight) * (hard[i] - onehot) + weight * temperature * (soft[i] - target[i]);
            *d = T::of(g * inv_rows);
        }
    }
    T::of(total * inv_rows)
}

/// `softmax(x / temperature)` into `probs`; returns `ln sum_i exp(x_i / temperature)`.
fn log_softmax(x: &[f64], temperature: f64, probs: &mut [f64]) -> f64 {
    let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v)) / temperature;
    let mut sum = 0.0;
    for (p, &v) in probs.iter_mut().zip(x) {
        *p = (v / temperature - max).exp();
        sum += *p;
    }
    probs.iter_mut().for_each(|p| *p /= sum);
    sum.ln() + max
}

#[cfg(test)]
mod tests {
    use super::distillation_loss;
    use crate::head::cross_entropy;

    fn logits(seed: u64, len: usize) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen_range(-3.0..3.0)).collect()
    }

    /// The written gradient against central finite differences of the loss, in float64.
    #[test]
    fn the_gradient_matches_finite_differences() {
        let (rows, classes) = (3, 5);
        let (z, t) = (logits(1, rows * classes), logits(2, rows * classes));
        let y = [4, 0, 2];
        for (weight, temperature) in [(0.5, 2.0), (1.0, 4.0), (0.3, 0.7)] {
            let mut grad = vec![0.0; z.len()];
            distillation_loss(&z, &t, classes, &y, weight, temperature, &mut grad);
            let mut scratch = vec![0.0; z.len()];
            for i in 0..z.len() {
                let h = 1e-6;
                let (mut up, mut down) = (z.clone(), z.clone());
                up[i] += h;
                down[i] -= h;
                let numeric =
                    (distillation_loss(&up, &t, classes, &y, weight, temperature, &mut scratch)
                        - distillation_loss(
                            &down,
                            &t,
                            classes,
                            &y,
                            weight,
                            temperature,
                            &mut scratch,
                        ))
                        / (2.0 * h);
                assert!(
                    (numeric - grad[i]).abs() < 1e-8,
                    "a {weight} tau {temperature} logit {i}: {numeric} vs {}",
                    grad[i]
                );
            }
        }
    }

    /// Weight 0 is the labels' cross-entropy; weight 1 with the teacher's own logits as the
    /// student's is zero, with a zero gradient (KL of a distribution with itself).
    #[test]
    fn the_ends_of_the_mixture_are_cross_entropy_and_the_teacher() {
        let (rows, classes) = (4, 3);
        let (z, t) = (logits(3, rows * classes), logits(4, rows * classes));
        let y = [0, 1, 2, 1];
        let (mut grad, mut expected) = (vec![0.0; z.len()], vec![0.0; z.len()]);
        let loss = distillation_loss(&z, &t, classes, &y, 0.0, 3.0, &mut grad);
        let ce = cross_entropy(&z, classes, &y, &mut expected);
        assert!((loss - ce).abs() < 1e-12, "{loss} vs {ce}");
        for (a, b) in grad.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        let loss = distillation_loss(&t, &t, classes, &y, 1.0, 3.0, &mut grad);
        assert!(loss.abs() < 1e-12, "{loss}");
        assert!(grad.iter().all(|g| g.abs() < 1e-12), "{grad:?}");
        // And a student away from the teacher pays for it.
        assert!(distillation_loss(&z, &t, classes, &y, 1.0, 3.0, &mut grad) > 1e-3);
    }
}
