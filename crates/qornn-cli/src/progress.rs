//! Progress on screen: a bar with loss and speed on a terminal, plain lines otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qornn::run::{EvalRecord, Observer, RunStart};
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct Progress {
    /// Printed when the run starts, with its step count and baseline.
    banner: String,
    bar: Option<ProgressBar>,
    /// Set by SIGTERM or SIGINT: checkpoint and stop.
    stop: Arc<AtomicBool>,
}

impl Progress {
    pub fn new(banner: String) -> Self {
        Self {
            banner,
            bar: None,
            stop: crate::signals::stop_requested(),
        }
    }
}

fn describe(r: &EvalRecord) -> String {
    let acc = r
        .val_accuracy
        .map(|a| format!("  val acc {:.3}", a))
        .unwrap_or_default();
    let bpc = r
        .val_bits_per_char
        .map(|b| format!("  val bpc {b:.3}"))
        .unwrap_or_default();
    let ppl = r
        .val_perplexity
        .map(|p| format!("  val ppl {p:.1}"))
        .unwrap_or_default();
    let orthogonality = r
        .orthogonality
        .map(|o| {
            format!(
                "  |q(W)q(W)^T-I| {:.3}  sigma(q(W)) [{:.3}, {:.3}]",
                o.quantized_defect, o.quantized_sigma_min, o.quantized_sigma_max
            )
        })
        .unwrap_or_default();
    let flips = r
        .code_changes
        .map(|f| format!("  W codes changed {f}"))
        .unwrap_or_default();
    let hidden_step = match (r.hidden_step, r.hidden_frac) {
        (Some(step), _) => format!("  h step 2^{:.3}", step.log2()),
        (None, Some(f)) => format!("  h step 2^{}", -f),
        (None, None) => String::new(),
    };
    format!(
        "step {}  train {:.4}  val {:.4}{acc}{bpc}{ppl}  baseline {:.4}{orthogonality}{flips}{hidden_step}  {:.0}s",
        r.step, r.train_loss, r.val_loss, r.baseline_loss, r.seconds
    )
}

impl Observer for Progress {
    fn on_start(&mut self, start: &RunStart) {
        eprintln!(
            "{}; steps {}..{}; baseline loss {:.4}",
            self.banner, start.step, start.total_steps, start.baseline_loss
        );
        self.bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(start.total_steps),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
                )
                .expect("valid template"),
            );
            bar.set_position(start.step);
            bar
        });
    }

    fn on_step(&mut self, step: u64, loss: f32) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(format!("loss {loss:.4}"));
        }
    }

    fn on_eval(&mut self, record: &EvalRecord) {
        match &self.bar {
            Some(bar) => bar.println(describe(record)),
            None => eprintln!("{}", describe(record)),
        }
    }

    fn should_stop(&mut self) -> bool {
        crate::signals::is_set(&self.stop)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
