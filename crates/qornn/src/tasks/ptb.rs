//! Character-level Penn Treebank language modelling: one-hot characters in, the next
//! character out at every step, truncated backpropagation through time over segments of
//! `steps` tokens with the hidden state carried from one segment to the next.
//!
//! A split's tokens are cut into `B` contiguous streams (the usual "batchify"); segment `s`
//! reads tokens `s T .. s T + T` of every stream and predicts the ones after them.

use super::Batch;
use crate::data::ptb::Ptb;
use crate::head::Targets;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct PtbCharTask {
    pub data: Arc<Ptb>,
    /// Segment length T.
    pub steps: usize,
}

impl PtbCharTask {
    pub fn vocabulary(&self) -> usize {
        self.data.vocabulary.len()
    }

    /// Segments of `tokens` cut into `batch` streams (the last partial one dropped).
    pub fn segments(&self, tokens: &[u32], batch: usize) -> usize {
        let stream = tokens.len() / batch.max(1);
        stream.saturating_sub(1) / self.steps
    }

    /// Segment `segment` of `tokens` in `batch` streams: `x: (T, B, V)` one-hot, targets
    /// the next token `(T, B)`.
    pub fn batch(&self, tokens: &[u32], batch: usize, segment: usize) -> Batch {
        let (t_len, v) = (self.steps, self.vocabulary());
        let stream = tokens.len() / batch;
        let mut x = vec![0.0f32; t_len * batch * v];
        let mut y = vec![0usize; t_len * batch];
        for b in 0..batch {
            let start = b * stream + segment * t_len;
            for t in 0..t_len {
                x[(t * batch + b) * v + tokens[start + t] as usize] = 1.0;
                y[t * batch + b] = tokens[start + t + 1] as usize;
            }
        }
        Batch {
            steps: t_len,
            batch,
            input: v,
            x,
            targets: Targets::Classes(y),
        }
    }
}
