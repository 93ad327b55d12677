//! Penn Treebank language modelling: the next token predicted at every step, truncated
//! backpropagation through time over segments of `steps` tokens, the hidden state carried
//! from one segment to the next. Characters (`ptb-char`) come in one-hot; words
//! (`ptb-word`) come in as token ids for the model's float embedding.
//!
//! A split's tokens are cut into `B` contiguous streams (the usual "batchify"); segment `s`
//! reads tokens `s T .. s T + T` of every stream and predicts the ones after them.

use super::Batch;
use crate::data::ptb::{Level, Ptb};
use crate::head::Targets;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct PtbTask {
    pub level: Level,
    pub data: Arc<Ptb>,
    /// Segment length T.
    pub steps: usize,
    /// Word level: the embedding size d (the recurrence's input size).
    pub embedding: usize,
}

impl PtbTask {
    pub fn vocabulary(&self) -> usize {
        self.data.vocabulary.len()
    }

    /// The recurrence's input size: one-hot characters, or embedded words.
    pub fn input_size(&self) -> usize {
        match self.level {
            Level::Char => self.vocabulary(),
            Level::Word => self.embedding,
        }
    }

    /// Segments of `tokens` cut into `batch` streams (the last partial one dropped).
    pub fn segments(&self, tokens: &[u32], batch: usize) -> usize {
        let stream = tokens.len() / batch.max(1);
        stream.saturating_sub(1) / self.steps
    }

    /// Segment `segment` of `tokens` in `batch` streams: the inputs (one-hot `x: (T, B, V)`
    /// or `tokens: (T, B)`) and, as targets, the next token `(T, B)`.
    pub fn batch(&self, tokens: &[u32], batch: usize, segment: usize) -> Batch {
        let t_len = self.steps;
        let stream = tokens.len() / batch;
        let mut inputs = vec![0u32; t_len * batch];
        let mut y = vec![0usize; t_len * batch];
        for b in 0..batch {
            let start = b * stream + segment * t_len;
            for t in 0..t_len {
                inputs[t * batch + b] = tokens[start + t];
                y[t * batch + b] = tokens[start + t + 1] as usize;
            }
        }
        let (x, tokens) = match self.level {
            Level::Char => {
                let v = self.vocabulary();
                let mut x = vec![0.0f32; t_len * batch * v];
                for (row, &token) in x.chunks_mut(v).zip(&inputs) {
                    row[token as usize] = 1.0;
                }
                (x, Vec::new())
            }
            Level::Word => (Vec::new(), inputs),
        };
        Batch {
            steps: t_len,
            batch,
            input: self.input_size(),
            x,
            tokens,
            targets: Targets::Classes(y),
        }
    }
}
