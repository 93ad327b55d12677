//! Loading the float64 reference vectors (`tests/reference`, or `QORNN_REFERENCE_DIR`).
#![allow(dead_code)]

use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::PathBuf;

pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

pub struct Reference {
    pub name: String,
    tensors: HashMap<String, Tensor>,
}

pub fn reference_dir() -> PathBuf {
    match std::env::var_os("QORNN_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference"),
    }
}

/// Loads `<dir>/<name>.safetensors`; a missing or unreadable file fails the test.
pub fn load(name: &str) -> Reference {
    let path = reference_dir().join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("reference file {} is missing: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("reference file {} is corrupt: {e}", path.display()));
    let mut tensors = HashMap::new();
    for (key, view) in st.tensors() {
        let data: Vec<f64> = match view.dtype() {
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{name}: tensor {key} has unexpected dtype {other:?}"),
        };
        tensors.insert(
            key.to_string(),
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Reference {
        name: name.to_string(),
        tensors,
    }
}

impl Reference {
    pub fn get(&self, key: &str) -> &Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("{}: no tensor named {key}", self.name))
    }
    pub fn f64(&self, key: &str) -> Vec<f64> {
        self.get(key).data.clone()
    }
    pub fn f32(&self, key: &str) -> Vec<f32> {
        self.get(key).data.iter().map(|&v| v as f32).collect()
    }
    pub fn shape(&self, key: &str) -> &[usize] {
        &self.get(key).shape
    }
    pub fn labels(&self, key: &str) -> Vec<usize> {
        self.get(key).data.iter().map(|&v| v as usize).collect()
    }
}

/// `||ours - reference|| / ||reference||` (absolute norm when the reference is zero).
pub fn relative_error<T: Copy + Into<f64>>(ours: &[T], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let diff: f64 = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (a.into() - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = reference.iter().map(|b| b * b).sum::<f64>().sqrt();
    if norm > 0.0 {
        diff / norm
    } else {
        diff
    }
}

/// Collects every failing comparison so that one test reports all of them.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    pub fn close<T: Copy + Into<f64>>(
        &mut self,
        what: &str,
        ours: &[T],
        reference: &[f64],
        tol: f64,
    ) {
        if !self.same_length(what, ours.len(), reference.len()) {
            return;
        }
        let err = relative_error(ours, reference);
        if err.is_nan() || err > tol {
            self.failures
                .push(format!("{what}: relative error {err:.3e} above {tol:.0e}"));
        }
    }
    pub fn exact<T: Copy + Into<f64>>(&mut self, what: &str, ours: &[T], reference: &[f64]) {
        if !self.same_length(what, ours.len(), reference.len()) {
            return;
        }
        if let Some((i, (a, b))) = ours
            .iter()
            .zip(reference)
            .enumerate()
            .find(|(_, (a, b))| (**a).into() != **b)
        {
            self.failures.push(format!(
                "{what}: first mismatch at index {i}: ours {} reference {b}",
                (*a).into()
            ));
        }
    }
    /// Records a failure when the lengths differ.
    fn same_length(&mut self, what: &str, ours: usize, reference: usize) -> bool {
        if ours != reference {
            self.failures.push(format!(
                "{what}: {ours} values, the reference has {reference}"
            ));
        }
        ours == reference
    }

    /// The integer codes of a quantized tensor against the reference's dequantized values
    /// divided by our step (exact: a code is an integer, a last-ulp step difference does
    /// not change the quotient's rounding).
    pub fn codes(
        &mut self,
        what: &str,
        ours: &qornn::quant::QuantizedTensor<f64>,
        reference_values: &[f64],
    ) {
        let step = ours.steps[0];
        let reference: Vec<f64> = reference_values
            .iter()
            .map(|v| (v / step).round())
            .collect();
        let codes: Vec<f64> = ours.codes.iter().map(|&c| c as f64).collect();
        self.exact(what, &codes, &reference);
    }

    pub fn finish(self) {
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}

/// What one f64 ORNN cell pass gives: the states `h_1..h_T` and the gradients of `dh`.
pub struct CellPass {
    pub h: Vec<f64>,
    pub dw: Vec<f64>,
    pub du: Vec<f64>,
    pub db: Vec<f64>,
    pub dbm: Vec<f64>,
    /// `dL/ds` of the hidden quantizer's step (zero without one).
    pub d_hidden_step: f64,
}

/// `cell`'s forward over `x` and backward from `dh` with the parameters `p`, from zero
/// gradients.
pub fn run_cell(
    cell: &mut qornn::OrnnCell<f64>,
    p: &qornn::CellParams<'_, f64>,
    x: &[f64],
    dh: &[f64],
    par: faer::Par,
) -> CellPass {
    let (n, d) = (p.b.len(), p.u.len() / p.b.len());
    cell.forward(p, x, par);
    let (mut dw, mut du, mut db, mut dbm) = (
        vec![0.0; n * n],
        vec![0.0; n * d],
        vec![0.0; n],
        vec![0.0; n],
    );
    let mut d_hidden_step = 0.0;
    let mut g = qornn::CellGrads {
        w: &mut dw,
        u: &mut du,
        b: &mut db,
        bm: &mut dbm,
        hidden_step: &mut d_hidden_step,
    };
    cell.backward(p, x, dh, &mut g, None, par);
    CellPass {
        h: cell.outputs().to_vec(),
        dw,
        du,
        db,
        dbm,
        d_hidden_step,
    }
}

/// The ORNN cell's forward over `x` and backward from `dh`, in f64, with the recurrence `w`
/// and the input weights `u: (n, d)`, biases `b`, `bm`: the harness of the fast recurrence
/// paths' tests (each against the same cell with the dense W).
#[allow(clippy::too_many_arguments)]
pub fn ornn_cell_pass(
    shape: qornn::CellShape,
    activation: qornn::Activation,
    par: faer::Par,
    w: qornn::Recurrence<'_, f64>,
    (u, b, bm): (&[f64], &[f64], &[f64]),
    x: &[f64],
    dh: &[f64],
) -> CellPass {
    let p = qornn::CellParams {
        w,
        u,
        b,
        bm,
        hidden_quant: None,
    };
    run_cell(&mut qornn::OrnnCell::new(shape, activation), &p, x, dh, par)
}
