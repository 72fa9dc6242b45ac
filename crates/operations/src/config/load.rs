//! Reading `coffer.toml`: TOML syntax and types through serde, with the position of every
//! error turned into `FILE:LINE:COLUMN`.

use super::Config;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where in the file (1-based line and column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` in `text`.
    #[must_use]
    pub fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self { line, column }
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A syntax, type or consistency error at a place in the file.
    #[error("{}:{}:{}: {message}", path.display(), at.line, at.column)]
    At {
        /// The file.
        path: PathBuf,
        /// Where.
        at: Location,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An error that has no one place (e.g. between two tables).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The class of this error for exit codes: a bad file is `Invalid`, an unreadable one
    /// `Io`.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        match self {
            Self::Read { .. } => coffer_store::ErrorClass::Io,
            Self::At { .. } | Self::File { .. } => coffer_store::ErrorClass::Invalid,
        }
    }
}

impl Config {
    /// Reads and checks the policy file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file (and line and column where there is one).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text`, read from `path` (named in errors).
    ///
    /// # Errors
    /// [`ConfigError::At`] for syntax and type errors and unknown keys.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(Location { line: 1, column: 1 }, |s| Location::of(text, s.start));
            ConfigError::At { path: path.to_path_buf(), at, message: one_line(e.message()) }
        })?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }
}

/// toml's messages can span lines; an error is one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::of(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of(text, 6), Location { line: 2, column: 1 });
        assert_eq!(Location::of(text, text.find('=').unwrap()), Location { line: 1, column: 3 });
        let second_eq = text.rfind('=').unwrap();
        assert_eq!(Location::of(text, second_eq), Location { line: 2, column: 4 });
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_place() {
        let text = "[daemon]\nmax-concurent-jobs = 3\n";
        let e = Config::parse(text, Path::new("coffer.toml")).unwrap_err().to_string();
        assert!(e.starts_with("coffer.toml:2:1: "), "{e}");
        assert!(e.contains("max-concurent-jobs"), "{e}");
    }
}
