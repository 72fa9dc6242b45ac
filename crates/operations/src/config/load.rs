//! Reading `coffer.toml`: TOML syntax and types through serde, with the position of every
//! error turned into `FILE:LINE:COLUMN`.

use super::Config;
use serde::Deserialize as _;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

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
    /// An error caused by a `COFFER_*` override: names the variable.
    #[error("{}: {variable}: {message}", path.display())]
    Override {
        /// The file overridden.
        path: PathBuf,
        /// The variable.
        variable: String,
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
            Self::At { .. } | Self::Override { .. } | Self::File { .. } => coffer_store::ErrorClass::Invalid,
        }
    }
}

impl Config {
    /// Reads and checks the policy file at `path`, with the `COFFER_*__*` overrides of the
    /// process environment applied (see [`overrides`](super::overrides)).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file (and line and column, or the overriding variable).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // Variables that are not UTF-8 cannot be overrides (their names are ASCII by rule).
        let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::load_with_env(path, vars)
    }

    /// Reads and checks the policy file at `path` with the overrides among `vars` (pure: the
    /// process environment is not read).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with_env(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse_with_env(&text, path, vars)
    }

    /// Parses and checks `text`, read from `path` (named in errors), without overrides.
    ///
    /// # Errors
    /// [`ConfigError::At`] for syntax and type errors, unknown keys and broken rules
    /// (docs/configuration.md, "The rules"); [`ConfigError::File`] for a rule about the whole file.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, path, std::iter::empty())
    }

    /// Parses and checks `text` with the overrides among `vars` applied before the types
    /// are checked.
    ///
    /// # Errors
    /// As [`Config::parse`]; an error an override causes is [`ConfigError::Override`].
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let overrides = super::env::overrides(vars);
        let places = Places { text, path, overrides: &overrides };
        let mut root = DeTable::parse(text).map_err(|e| places.error(e.span(), e.message()))?;
        for (i, ov) in overrides.iter().enumerate() {
            super::env::apply(root.get_mut(), ov, &places.override_span(i)).map_err(|message| {
                ConfigError::Override {
                    path: path.to_path_buf(),
                    variable: ov.variable.clone(),
                    message: format!("{} {message}", ov.path.join(".")),
                }
            })?;
        }
        let doc = root.clone();
        let mut config = Self::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
            // "missing field `x`" points at the table's header: say which table.
            let table = e.span().and_then(|s| Doc { root: doc.get_ref() }.path_at(&s));
            match table {
                Some(t) if e.message().starts_with("missing field") => {
                    places.error(e.span(), &format!("{} in [{t}]", e.message()))
                }
                _ => places.error(e.span(), e.message()),
            }
        })?;
        config.path = Some(path.to_path_buf());
        super::validate::validate(&config, &Doc { root: doc.get_ref() }, &places)?;
        Ok(config)
    }
}

/// Maps spans of the parsed document to places: a line and column of the file, or the
/// override variable whose value carries the span.
pub(super) struct Places<'a> {
    text: &'a str,
    path: &'a Path,
    overrides: &'a [super::env::Override],
}

impl Places<'_> {
    /// The span the values of override `i` carry: past the end of the file, one per
    /// override, so an error's span tells which variable caused it.
    fn override_span(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.text.len() + 1 + i;
        start..start + 1
    }

    /// The error `message` at `span` (none: the top of the file).
    pub(super) fn error(&self, span: Option<std::ops::Range<usize>>, message: &str) -> ConfigError {
        let message = one_line(message);
        match span {
            Some(s) if s.start > self.text.len() => {
                let i = s.start - self.text.len() - 1;
                let variable = self.overrides.get(i).map_or_else(|| "COFFER_?".to_owned(), |o| o.variable.clone());
                ConfigError::Override { path: self.path.to_path_buf(), variable, message }
            }
            Some(s) => ConfigError::At { path: self.path.to_path_buf(), at: Location::of(self.text, s.start), message },
            None => ConfigError::At { path: self.path.to_path_buf(), at: Location { line: 1, column: 1 }, message },
        }
    }
}

/// The parsed document (after overrides), to find where a key or value is.
pub(super) struct Doc<'a, 'i> {
    root: &'a DeTable<'i>,
}

/// Which part of an entry an error points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    /// The key (a name that is wrong).
    Key,
    /// The value.
    Value,
}

impl Doc<'_, '_> {
    /// The dotted key path of the table whose value has exactly `span` (array entries as
    /// their index).
    pub(super) fn path_at(&self, span: &std::ops::Range<usize>) -> Option<String> {
        fn find(v: &DeValue<'_>, span: &std::ops::Range<usize>, path: &mut Vec<String>) -> bool {
            let children: Vec<(String, &toml::Spanned<DeValue<'_>>)> = match v {
                DeValue::Table(t) => t.iter().map(|(k, v)| (k.get_ref().to_string(), v)).collect(),
                DeValue::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
                _ => return false,
            };
            for (k, child) in children {
                path.push(k);
                if (child.span() == *span && child.get_ref().is_table()) || find(child.get_ref(), span, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
        let mut path = Vec::new();
        find(&DeValue::Table(self.root.clone()), span, &mut path).then(|| path.join("."))
    }

    /// The span of the key or value at `path` (a number segment indexes an array); where the
    /// path does not exist (a default), the span of its deepest existing ancestor.
    pub(super) fn span(&self, path: &[&str], part: Part) -> Option<std::ops::Range<usize>> {
        let mut table = self.root;
        let mut best: Option<std::ops::Range<usize>> = None;
        let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let found = match value.map(toml::Spanned::get_ref) {
                None => table.get_key_value(*seg).map(|(k, v)| (Some(k.span()), v)),
                Some(DeValue::Table(t)) => t.get_key_value(*seg).map(|(k, v)| (Some(k.span()), v)),
                Some(DeValue::Array(a)) => seg.parse::<usize>().ok().and_then(|n| a.get(n)).map(|v| (None, v)),
                Some(_) => None,
            };
            let Some((key_span, v)) = found else { return best };
            best = Some(match (last, part, key_span) {
                (true, Part::Key, Some(k)) => k,
                _ => v.span(),
            });
            if let DeValue::Table(t) = v.get_ref() {
                table = t;
            }
            value = Some(v);
        }
        best
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
