//! The Penn Treebank as prepared by Mikolov: word level `ptb.{train,valid,test}.txt` and
//! character level `ptb.char.{train,valid,test}.txt` (characters separated by spaces, `_`
//! between words), one sentence a line, each optionally `.gz`. Tokens are the
//! whitespace-separated items of a line, and every line ends with an end-of-line token.

use super::{locate, read_file, Checksums};
use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The token that ends every line.
pub const END_OF_LINE: &str = "<eol>";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Char,
    Word,
}

impl Level {
    fn file(self, split: &str) -> String {
        match self {
            Level::Char => format!("ptb.char.{split}.txt"),
            Level::Word => format!("ptb.{split}.txt"),
        }
    }
}

/// The largest vocabulary (end of line included) a training text may have.
pub const MAX_VOCABULARY: usize = 1 << 16;

/// Token ids of the three splits and the vocabulary (the training file's tokens, sorted,
/// then the end of line).
#[derive(Clone, Debug, PartialEq)]
pub struct Ptb {
    pub vocabulary: Vec<String>,
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .flat_map(|line| line.split_whitespace().chain(std::iter::once(END_OF_LINE)))
}

fn text_of(path: &Path, checksums: Checksums) -> Result<String> {
    String::from_utf8(read_file(path, checksums)?)
        .map_err(|e| Error::bad_file(path, format!("not UTF-8 text ({e})")))
}

impl Ptb {
    pub fn load(dir: &Path, level: Level, checksums: Checksums) -> Result<Self> {
        let mut texts = Vec::new();
        for split in ["train", "valid", "test"] {
            let path = locate(dir, &level.file(split))?;
            let text = text_of(&path, checksums)?;
            texts.push((path, text));
        }
        let [train, valid, test] = [0, 1, 2].map(|i| (texts[i].0.as_path(), texts[i].1.as_str()));
        Self::from_texts(train, valid, test)
    }

    /// The vocabulary of the training text and the three splits as token ids; each text
    /// comes with the path its errors name.
    pub fn from_texts(
        (train_path, train_text): (&Path, &str),
        valid: (&Path, &str),
        test: (&Path, &str),
    ) -> Result<Self> {
        let words: BTreeSet<&str> = tokens(train_text).filter(|t| *t != END_OF_LINE).collect();
        if words.is_empty() {
            return Err(Error::bad_file(
                train_path,
                "no tokens: the training file is empty",
            ));
        }
        // The vocabulary sizes the one-hot input and the read-out (10,000 words for PTB, 50
        // characters): a text with more distinct tokens is not a vocabulary to train on.
        if words.len() >= MAX_VOCABULARY {
            return Err(Error::bad_file(
                train_path,
                format!(
                    "{} distinct tokens: a vocabulary is at most {MAX_VOCABULARY} (PTB has 10,000 \
                     words)",
                    words.len() + 1
                ),
            ));
        }
        let vocabulary: Vec<String> = words
            .iter()
            .copied()
            .chain([END_OF_LINE])
            .map(String::from)
            .collect();
        let ids: HashMap<&str, u32> = vocabulary
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let index = |path: &Path, text: &str| -> Result<Vec<u32>> {
            tokens(text)
                .map(|t| {
                    ids.get(t).copied().ok_or_else(|| {
                        Error::bad_file(
                            path,
                            format!("token `{t}` does not occur in the training file"),
                        )
                    })
                })
                .collect()
        };
        let train = index(train_path, train_text)?;
        let valid = index(valid.0, valid.1)?;
        let test = index(test.0, test.1)?;
        Ok(Self {
            vocabulary,
            train,
            valid,
            test,
        })
    }
}
