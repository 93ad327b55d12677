//! Reading and writing configurations: TOML files, defaults -> file -> flags, a resumed
//! run's settings and what it may change, the default run folder.

use super::*;

/// A run folder's configuration file.
pub const CONFIG_FILE: &str = "config.toml";

/// The settings a resumed run may change: train longer, evaluate at another interval (the
/// training itself is the same), on other threads or another copy of the data.
pub const CHANGEABLE_ON_RESUME: [&str; 5] =
    ["steps", "epochs", "eval_every", "threads", "data_dir"];
impl Config {
    /// Reads a TOML file; unknown keys and bad values name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// A config file's text; errors name `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::bad_file(path, format!("not a valid qornn config: {e}")))
    }

    /// The run's settings: the defaults, then the config `file`, then `flags` (keys of
    /// `SETTINGS` with the values their `parse` gave); checked with `validate`. Errors name
    /// the file, or the setting (the flag) to fix.
    pub fn layered(file: Option<&Path>, flags: &toml::Table) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                text.parse::<toml::Table>()
                    .map_err(|e| Error::bad_file(path, format!("not valid TOML: {e}")))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in flags {
            if let Some(alias) = SETTINGS.iter().find(|s| s.key == key).and_then(|s| s.alias) {
                table.remove(alias);
            }
            table.insert(key.clone(), value.clone());
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| match file {
                Some(path) => Error::bad_file(path, format!("not a valid qornn config: {e}")),
                None => Error::config("flags", e.to_string()),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The settings of the run in `dir` continued: its `config.toml` with the `flags` that
    /// may change (`CHANGEABLE_ON_RESUME`); any other flag is refused, naming it, as it would
    /// silently not apply.
    pub fn resumed(dir: &Path, flags: &toml::Table) -> Result<Self> {
        let fixed: Vec<&str> = flags
            .keys()
            .map(String::as_str)
            .filter(|key| !CHANGEABLE_ON_RESUME.contains(key))
            .collect();
        if !fixed.is_empty() {
            return Err(Error::config(
                &fixed.join(", "),
                format!(
                    "the run in {} continues as its config.toml says; these cannot change in \
                     a resumed run (only {} can)",
                    dir.display(),
                    CHANGEABLE_ON_RESUME.join(", ")
                ),
            ));
        }
        Self::layered(Some(&dir.join(CONFIG_FILE)), flags)
    }

    /// The settings, other than those a resumed run may change, whose values differ
    /// between `self` and `other`.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        let table = |c: &Config| -> toml::Table {
            toml::Value::try_from(c)
                .ok()
                .and_then(|v| v.as_table().cloned())
                .unwrap_or_default()
        };
        let (a, b) = (table(self), table(other));
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| !CHANGEABLE_ON_RESUME.contains(&k.as_str()))
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }

    /// The run folder when none is given: `runs/<task>-<model>-<k>b-n<hidden>-s<seed>`,
    /// with `fp` for full precision.
    pub fn default_run_dir(&self) -> PathBuf {
        let bits = if self.full_precision() {
            "fp".to_string()
        } else {
            format!("{}b", self.bits())
        };
        PathBuf::from("runs").join(format!(
            "{}-{}-{bits}-n{}-s{}",
            self.task, self.model, self.hidden, self.seed
        ))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serialises")
    }
}
