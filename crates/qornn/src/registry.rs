//! The models that `--model` names, each registered where it is implemented.
//!
//! A model is a [`ModelEntry`]: its name, its cell, the recurrent parametrisation of an
//! ORNN, its default bit width and its own checks of a configuration. Each entry is a
//! `const` in the file that implements it (`parametrisation/bjorck.rs` holds `qornn-bjorck`
//! and `ornn-bjorck`, `cells/lstm.rs` holds `lstm`), and each of those files is declared
//! and registered by one line of [`register!`] in its folder's `mod.rs`:
//!
//! ```text
//! register! { rotations: QORNN_ROTATIONS; }   // parametrisation/mod.rs
//! ```
//!
//! which declares `pub mod rotations;` and lists `rotations::QORNN_ROTATIONS` in that
//! folder's `MODELS`. [`ModelName`] is a handle on an entry, found by its name in those lists.

use crate::cells::Cell;
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::parametrisation::bjorck::BjorckConfig;
use crate::parametrisation::RecurrentParametrisation;
use crate::params::Tensor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares each listed file as a public module and lists the model entries it registers in
/// `pub const MODELS`: one line per file, `file: ENTRY, ENTRY;`.
macro_rules! register {
    ($($(#[$meta:meta])* $module:ident: $($entry:ident),+;)+) => {
        $($(#[$meta])* pub mod $module;)+

        /// The models registered in this folder, in the order of the documentation.
        pub const MODELS: &[&$crate::registry::ModelEntry] = &[$($(&$module::$entry,)+)+];
    };
}
pub(crate) use register;

/// The bit width that means full precision (floats).
pub const FULL_PRECISION_BITS: u32 = 32;
/// The quantized ORNNs' default bit width.
pub const QORNN_BITS: u32 = 8;
/// The default bits of the Hadamard recurrences' and the rotations' input matrix.
pub const HADAMRNN_BITS: u32 = 4;

/// What a model's own checks read of a configuration ([`ModelEntry::check`]).
#[derive(Clone, Copy, Debug)]
pub struct ModelSettings {
    pub name: &'static str,
    pub hidden: usize,
    /// `--block`.
    pub block: usize,
    pub bjorck_iterations: usize,
    /// Whether a bit-width schedule (`--bits-schedule`) is set.
    pub bits_schedule: bool,
}

/// What an ORNN's parametrisation is built from.
#[derive(Clone, Copy, Debug)]
pub struct ParametrisationContext {
    /// Hidden units.
    pub n: usize,
    /// Björck's iteration settings.
    pub bjorck: BjorckConfig,
    /// The model's weight bits; `None`: full precision (exact parametrisations' codes).
    pub bits: Option<u32>,
    /// `--block`: the block size of a block-structured recurrence.
    pub block: usize,
}

/// Builds an ORNN's recurrent parametrisation.
pub type BuildParametrisation = fn(&ParametrisationContext) -> Box<dyn RecurrentParametrisation>;

/// Builds a core from the model's shape and, for an Elman core, its recurrent parameter.
pub type BuildCell = fn(&ModelSpec, Option<Tensor>) -> Box<dyn Cell>;

/// One `--model`.
#[derive(Debug)]
pub struct ModelEntry {
    /// The name in configs and on the command line.
    pub name: &'static str,
    /// The core.
    pub cell: BuildCell,
    /// An ORNN's recurrent parametrisation; `None`: the cell's own weights.
    pub parametrisation: Option<BuildParametrisation>,
    /// `act(W h + U x + b)` (`cells/ornn.rs`): `--act`, learned steps and the integer
    /// deployment apply.
    pub elman: bool,
    /// Bits of W and U when `--bits` is not given (`FULL_PRECISION_BITS`: floats).
    pub default_bits: u32,
    /// Whether `--bits` may quantize it (`false`: a full-precision twin, e.g. `ornn-*`).
    pub quantizable: bool,
    /// Low-rank `W` and `U` (`--rank-w`, `--rank-u`) are available.
    pub low_rank: bool,
    /// Checks particular to the model (its width, its block), naming the key to fix.
    pub check: fn(&ModelSettings) -> Result<()>,
}

fn no_check(_: &ModelSettings) -> Result<()> {
    Ok(())
}

impl ModelEntry {
    /// A core of its own, full precision by default.
    pub const fn cell(name: &'static str, cell: BuildCell) -> Self {
        Self {
            name,
            cell,
            parametrisation: None,
            elman: false,
            default_bits: FULL_PRECISION_BITS,
            quantizable: true,
            low_rank: false,
            check: no_check,
        }
    }

    /// An Elman core `act(W h + U x + b)`, with `W` from `parametrisation` (an ORNN) or free
    /// (`None`, the RNN), full precision by default.
    pub const fn elman(name: &'static str, parametrisation: Option<BuildParametrisation>) -> Self {
        Self {
            parametrisation,
            elman: true,
            ..Self::cell(name, crate::cells::ornn::ElmanCore::build)
        }
    }

    /// Quantized to `bits` unless `--bits` says otherwise.
    pub const fn quantized(self, bits: u32) -> Self {
        Self {
            default_bits: bits,
            ..self
        }
    }

    /// Full precision only.
    pub const fn float_only(self) -> Self {
        Self {
            quantizable: false,
            ..self
        }
    }

    /// With low-rank `W` and `U` available.
    pub const fn with_low_rank(self) -> Self {
        Self {
            low_rank: true,
            ..self
        }
    }

    /// With its own checks of a configuration.
    pub const fn checked(self, check: fn(&ModelSettings) -> Result<()>) -> Self {
        Self { check, ..self }
    }
}

/// A registered model, named in configs and on the command line by its entry's name.
#[derive(Clone, Copy)]
pub struct ModelName(&'static ModelEntry);

impl ModelName {
    pub const fn new(entry: &'static ModelEntry) -> Self {
        Self(entry)
    }

    pub fn entry(self) -> &'static ModelEntry {
        self.0
    }

    /// Every registered model: the ORNNs, then the other cells.
    pub fn all() -> impl Iterator<Item = ModelName> {
        crate::parametrisation::MODELS
            .iter()
            .chain(crate::cells::MODELS)
            .map(|&entry| ModelName(entry))
    }

    /// The name in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for ModelName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ModelName {}

impl std::hash::Hash for ModelName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl std::fmt::Debug for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelName({})", self.0.name)
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::str::FromStr for ModelName {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        Self::all().find(|m| m.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Self::all().map(|m| m.as_str()).collect();
            Error::config(
                "model",
                format!("unknown name `{text}`; choose one of {}", names.join(", ")),
            )
        })
    }
}

impl Serialize for ModelName {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_registered_once() {
        let names: Vec<&str> = ModelName::all().map(|m| m.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            names.len(),
            "a model name is registered twice"
        );
        assert!(names.contains(&"qornn-rotations") && names.contains(&"fastgrnn"));
    }
}
