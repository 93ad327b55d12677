//! Readers for the real data sets: MNIST (IDX) and the Penn Treebank (text), plain or
//! gzip-compressed, checked against the SHA-256 of the known files.

pub mod mnist;
pub mod ptb;

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// SHA-256 of the uncompressed files under their usual names.
const KNOWN_SHA256: [(&str, &str); 10] = [
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "ptb.char.test.txt",
        "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
    ),
    (
        "ptb.char.train.txt",
        "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    ),
    (
        "ptb.char.valid.txt",
        "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    ),
    (
        "ptb.test.txt",
        "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    ),
    (
        "ptb.train.txt",
        "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    ),
    (
        "ptb.valid.txt",
        "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    ),
];

/// The folder of the data sets: `--data-dir`, else `QORNN_DATA`, else `data`.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    match (flag, std::env::var_os("QORNN_DATA")) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => PathBuf::from("data"),
    }
}

/// Finds `dir/name` or `dir/name.gz`.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.exists() {
        Ok(plain)
    } else if gz.exists() {
        Ok(gz)
    } else {
        Err(Error::bad_file(
            plain,
            format!("not found (nor {name}.gz); point --data-dir or QORNN_DATA at the data"),
        ))
    }
}

/// The most a gzip data file may inflate to.
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// Gunzips `raw`, refusing it past `limit` bytes without inflating further (a few
/// kilobytes of gzip can claim terabytes).
fn inflate(raw: &[u8], path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_file(path, format!("corrupt or truncated gzip data ({e})")))?;
    if out.len() as u64 > limit {
        return Err(Error::bad_file(
            path,
            format!(
                "inflates to more than {limit} bytes; the largest data file (MNIST's training \
                 images) is 47,040,016"
            ),
        ));
    }
    Ok(out)
}

/// Whether [`read_file`] checks the SHA-256 of files with a known name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksums {
    Verify,
    /// For small files that tests write under the usual names.
    Skip,
}

/// Reads a file, gunzipping it when it starts with the gzip magic, and (with
/// `Checksums::Verify`) checks the SHA-256 of the uncompressed bytes when its name is a
/// known one.
pub fn read_file(path: &Path, checksums: Checksums) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        inflate(&raw, path, MAX_INFLATED_BYTES)?
    } else {
        raw
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let known = KNOWN_SHA256.iter().find(|(known, _)| *known == name);
    if let (Checksums::Verify, Some((_, expected))) = (checksums, known) {
        let actual: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if actual != *expected {
            return Err(Error::bad_file(path, format!("SHA-256 {actual} differs from the known {expected}: corrupt or another version")));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    /// Issue 22, defect 13: a gzip file is inflated only up to the limit, then refused
    /// naming the file.
    #[test]
    fn gzip_past_the_limit_is_refused_without_inflating_it_all() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![0u8; 5000]).unwrap();
        let raw = gz.finish().unwrap();
        let path = std::path::Path::new("bomb.gz");
        assert_eq!(super::inflate(&raw, path, 5000).unwrap().len(), 5000);
        let err = super::inflate(&raw, path, 4999).unwrap_err().to_string();
        assert!(
            err.contains("bomb.gz") && err.contains("more than 4999 bytes"),
            "{err}"
        );
    }
}
