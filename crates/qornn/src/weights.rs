//! Model weights alone, under the names PyTorch and EdgeML use (`weight_ih_l0`,
//! `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` for `torch.nn.LSTM`/`GRU`; `W`, `U`, `b_h`,
//! ... for FastRNN/FastGRNN; `readout.weight`/`readout.bias` for the read-out), with their
//! 2-D shapes, in a safetensors file: `load_state_dict(safetensors.torch.load_file(F),
//! strict=False)` reads ours, and a file saved from PyTorch initialises a qornn model.

use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::params::{Kind, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Biases and scalars are stored as PyTorch stores them: 1-D.
fn shape_of(t: &Tensor) -> Vec<usize> {
    if t.rows == 1 {
        vec![t.cols]
    } else {
        vec![t.rows, t.cols]
    }
}

/// Writes every tensor in f32 under its name.
pub fn save(path: &Path, tensors: &[Tensor]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            (
                t.name,
                TensorView::new(Dtype::F32, shape_of(t), b).expect("shape matches bytes"),
            )
        })
        .collect();
    let data = safetensors::serialize(views, None)
        .map_err(|e| Error::bad_file(path, format!("cannot serialise weights: {e}")))?;
    write_atomically(path, &data)
}

/// Reads the tensors of `spec` from a file (f32 or f64). Every tensor of the recurrent
/// core must be there with its shape; the read-out, the embedding and learned quantizer
/// steps are taken when present. Returns the tensors (zero where absent) and the names read.
pub fn load(path: &Path, spec: &ModelSpec) -> Result<(Vec<Tensor>, Vec<&'static str>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path, spec)
}

/// [`load`] on a file's bytes; errors name `path`.
pub fn parse(
    bytes: &[u8],
    path: &Path,
    spec: &ModelSpec,
) -> Result<(Vec<Tensor>, Vec<&'static str>)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::bad_file(path, format!("not a safetensors file ({e})")))?;
    let mut tensors = spec.tensors();
    let mut read = Vec::new();
    for t in tensors.iter_mut() {
        // A learned step (LSQ) absent from the file starts from the loaded tensor.
        let optional = t.name.starts_with("readout.")
            || t.name.starts_with("embedding.")
            || t.kind == Kind::Step;
        let view = match st.tensor(t.name) {
            Ok(view) => view,
            Err(_) if optional => continue,
            Err(_) => {
                return Err(Error::bad_file(
                    path,
                    format!("tensor `{}` is missing", t.name),
                ))
            }
        };
        if view.shape().iter().product::<usize>() != t.len()
            || !(view.shape() == shape_of(t) || view.shape() == [t.rows, t.cols])
        {
            return Err(Error::bad_file(
                path,
                format!(
                    "tensor `{}` has shape {:?}, the model needs {:?}",
                    t.name,
                    view.shape(),
                    shape_of(t)
                ),
            ));
        }
        t.data = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(Error::bad_file(
                    path,
                    format!("tensor `{}` is {other:?}; f32 or f64 expected", t.name),
                ))
            }
        };
        if let Some(bad) = t.data.iter().find(|v| !v.is_finite()) {
            return Err(Error::bad_file(
                path,
                format!("tensor `{}` holds a non-finite value ({bad})", t.name),
            ));
        }
        read.push(t.name);
    }
    Ok((tensors, read))
}
