//! Adam and RMSprop (PyTorch's update rules), gradient-norm clipping and learning-rate
//! schedules. The optimiser returns steps; the trainer decides how a step is applied
//! (added, or retracted onto the orthogonal group by projUNN).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    #[default]
    Rmsprop,
}

/// Hyper-parameters shared by every parameter group (learning rates come per call).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Adam's first-moment decay.
    pub beta1: f32,
    /// Adam's second-moment decay, RMSprop's `alpha`.
    pub beta2: f32,
    pub eps: f32,
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind) -> Self {
        let beta2 = match kind {
            OptimizerKind::Adam => 0.999,
            OptimizerKind::Rmsprop => 0.99,
        };
        Self {
            kind,
            beta1: 0.9,
            beta2,
            eps: 1e-8,
        }
    }
}

/// First and second moments of one tensor (the first is unused by RMSprop).
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

pub struct Optimizer {
    pub config: OptimizerConfig,
    pub moments: Vec<Moments>,
    /// Number of updates taken (Adam's bias correction).
    pub updates: u64,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, sizes: &[usize]) -> Self {
        let moments = sizes
            .iter()
            .map(|&n| Moments {
                m: vec![0.0; n],
                v: vec![0.0; n],
            })
            .collect();
        Self {
            config,
            moments,
            updates: 0,
        }
    }

    /// Marks the start of one optimiser step (once per training step, before `step`s).
    pub fn begin_step(&mut self) {
        self.updates += 1;
    }

    /// Writes the Euclidean step `delta` (to be added to the parameter) for tensor `index`.
    pub fn step(&mut self, index: usize, grad: &[f32], lr: f32, delta: &mut [f32]) {
        let c = self.config;
        let Moments { m, v } = &mut self.moments[index];
        match c.kind {
            OptimizerKind::Rmsprop => {
                for ((d, &g), v) in delta.iter_mut().zip(grad).zip(v.iter_mut()) {
                    *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                    *d = -lr * g / (v.sqrt() + c.eps);
                }
            }
            OptimizerKind::Adam => {
                let t = self.updates.max(1) as i32;
                let correction1 = 1.0 - c.beta1.powi(t);
                let correction2 = 1.0 - c.beta2.powi(t);
                for (((d, &g), m), v) in delta
                    .iter_mut()
                    .zip(grad)
                    .zip(m.iter_mut())
                    .zip(v.iter_mut())
                {
                    *m = c.beta1 * *m + (1.0 - c.beta1) * g;
                    *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                    let v_hat = (*v / correction2).sqrt();
                    *d = -lr * (*m / correction1) / (v_hat + c.eps);
                }
            }
        }
    }
}

/// Scales all gradients so that their joint L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [Vec<f32>], max_norm: f32) -> f32 {
    let norm = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt() as f32;
    if norm > max_norm && norm.is_finite() {
        let scale = max_norm / (norm + 1e-6);
        grads
            .iter_mut()
            .for_each(|g| g.iter_mut().for_each(|x| *x *= scale));
    }
    norm
}

/// The learning rate as a function of the step (0-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Schedule {
    #[default]
    Constant,
    /// Multiplied by `gamma` every `every` steps.
    Step { every: u64, gamma: f64 },
    /// Multiplied by `gamma` at every step: `lr gamma^step`.
    Exponential { gamma: f64 },
}

impl Schedule {
    pub fn factor(&self, step: u64) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => gamma.powi((step / every.max(1)) as i32),
            Schedule::Exponential { gamma } => gamma.powf(step as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsprop_first_step_matches_pytorch() {
        // PyTorch RMSprop(lr=0.1, alpha=0.99, eps=1e-8): v = 0.01 g^2, step = -lr g / sqrt(v).
        let mut opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Rmsprop), &[2]);
        opt.begin_step();
        let mut d = [0.0f32; 2];
        opt.step(0, &[2.0, -0.5], 0.1, &mut d);
        assert!(
            (d[0] + 1.0).abs() < 1e-5 && (d[1] - 1.0).abs() < 1e-5,
            "{d:?}"
        );
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let mut opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Adam), &[2]);
        opt.begin_step();
        let mut d = [0.0f32; 2];
        opt.step(0, &[3.0, -0.25], 0.01, &mut d);
        assert!(
            (d[0] + 0.01).abs() < 1e-6 && (d[1] - 0.01).abs() < 1e-6,
            "{d:?}"
        );
    }

    #[test]
    fn clipping_bounds_the_joint_norm() {
        let mut grads = vec![vec![3.0f32], vec![4.0f32]];
        let norm = clip_grad_norm(&mut grads, 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let (a, b) = (grads[0][0], grads[1][0]);
        assert!(((a * a + b * b).sqrt() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn schedules() {
        let s = Schedule::Step {
            every: 10,
            gamma: 0.5,
        };
        assert_eq!((s.factor(9), s.factor(10), s.factor(25)), (1.0, 0.5, 0.25));
        let e = Schedule::Exponential { gamma: 0.9 };
        assert!((e.factor(2) - 0.81).abs() < 1e-12);
    }
}
