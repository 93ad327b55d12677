//! MNIST in IDX format: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (each optionally `.gz`).

use super::{locate, read_file, Checksums};
use crate::error::{Error, Result};
use std::path::Path;

pub const ROWS: usize = 28;
pub const COLS: usize = 28;
pub const PIXELS: usize = ROWS * COLS;
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images as bytes (`count x 784`, row-major pixels) and labels 0..=9.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mnist {
    /// The 60,000 training images.
    pub train: Split,
    /// The 10,000 test images.
    pub test: Split,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Parses an IDX image file: magic 2051, count, 28, 28, then the pixels.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::bad_file(path, reason);
    if bytes.len() < 16 {
        return Err(bad(format!(
            "truncated: {} bytes, an IDX image header needs 16",
            bytes.len()
        )));
    }
    if be_u32(bytes, 0) != IMAGES_MAGIC {
        return Err(bad(format!(
            "magic number {:#010x}, expected {IMAGES_MAGIC:#010x} (IDX images)",
            be_u32(bytes, 0)
        )));
    }
    let (count, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if (rows, cols) != (ROWS, COLS) {
        return Err(bad(format!(
            "images are {rows}x{cols}, expected {ROWS}x{COLS}"
        )));
    }
    let expected = 16 + count * PIXELS;
    if bytes.len() != expected {
        return Err(bad(format!(
            "{} bytes for {count} images, expected {expected} (truncated or padded)",
            bytes.len()
        )));
    }
    Ok(bytes[16..].to_vec())
}

/// Parses an IDX label file: magic 2049, count, then labels 0..=9.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::bad_file(path, reason);
    if bytes.len() < 8 {
        return Err(bad(format!(
            "truncated: {} bytes, an IDX label header needs 8",
            bytes.len()
        )));
    }
    if be_u32(bytes, 0) != LABELS_MAGIC {
        return Err(bad(format!(
            "magic number {:#010x}, expected {LABELS_MAGIC:#010x} (IDX labels)",
            be_u32(bytes, 0)
        )));
    }
    let count = be_u32(bytes, 4) as usize;
    if bytes.len() != 8 + count {
        return Err(bad(format!(
            "{} bytes for {count} labels, expected {} (truncated or padded)",
            bytes.len(),
            8 + count
        )));
    }
    let labels = bytes[8..].to_vec();
    if let Some(i) = labels.iter().position(|&l| l > 9) {
        return Err(bad(format!(
            "label {} at index {i} is not a digit",
            labels[i]
        )));
    }
    Ok(labels)
}

fn load_split(dir: &Path, images: &str, labels: &str, checksums: Checksums) -> Result<Split> {
    let images_path = locate(dir, images)?;
    let labels_path = locate(dir, labels)?;
    let split = Split {
        images: parse_images(&read_file(&images_path, checksums)?, &images_path)?,
        labels: parse_labels(&read_file(&labels_path, checksums)?, &labels_path)?,
    };
    if split.images.len() != split.labels.len() * PIXELS {
        return Err(Error::bad_file(
            labels_path,
            format!(
                "{} labels for {} images in {}",
                split.labels.len(),
                split.images.len() / PIXELS,
                images_path.display()
            ),
        ));
    }
    Ok(split)
}

impl Mnist {
    /// Loads the four files from `dir`.
    pub fn load(dir: &Path, checksums: Checksums) -> Result<Self> {
        Ok(Self {
            train: load_split(
                dir,
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                checksums,
            )?,
            test: load_split(
                dir,
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
                checksums,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: u32) -> Vec<u8> {
        let mut b = IMAGES_MAGIC.to_be_bytes().to_vec();
        for v in [count, 28, 28] {
            b.extend(v.to_be_bytes());
        }
        b.extend((0..count as usize * PIXELS).map(|i| (i % 256) as u8));
        b
    }

    fn labels(values: &[u8]) -> Vec<u8> {
        let mut b = LABELS_MAGIC.to_be_bytes().to_vec();
        b.extend((values.len() as u32).to_be_bytes());
        b.extend(values);
        b
    }

    #[test]
    fn valid_files_parse() {
        let p = Path::new("x");
        assert_eq!(parse_images(&images(3), p).unwrap().len(), 3 * PIXELS);
        assert_eq!(parse_labels(&labels(&[1, 2, 9]), p).unwrap(), vec![1, 2, 9]);
    }

    #[test]
    fn broken_files_are_refused_with_their_reason() {
        let p = Path::new("some/file");
        let cases: Vec<(Result<Vec<u8>>, &str)> = vec![
            (parse_images(&images(3)[..100], p), "expected"),
            (parse_images(&images(3)[..10], p), "truncated"),
            (parse_images(&labels(&[1; 10]), p), "magic"),
            (parse_labels(&images(1), p), "magic"),
            (parse_labels(&labels(&[1, 2])[..9], p), "truncated"),
            (parse_labels(&labels(&[1, 12]), p), "not a digit"),
        ];
        for (i, (result, needle)) in cases.into_iter().enumerate() {
            let msg = result.expect_err("must be refused").to_string();
            assert!(
                msg.contains(needle) && msg.contains("some/file"),
                "case {i}: {msg}"
            );
        }
        let mut wrong_dims = images(1);
        wrong_dims[11] = 27;
        assert!(parse_images(&wrong_dims, p)
            .unwrap_err()
            .to_string()
            .contains("27x28"));
    }
}
