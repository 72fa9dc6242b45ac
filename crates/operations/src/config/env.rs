//! `COFFER_*` overrides: environment variables that set a key of the policy file, applied to
//! the parsed document *before* it is deserialized, so an override goes through exactly the
//! same type checks and validation as the file itself.
//!
//! The rule: `COFFER_<TABLE>__<KEY>…` — a double underscore separates levels, a single
//! underscore stands for `-`, the name is read in lowercase. `COFFER_DAEMON__MAX_CONCURRENT_JOBS=4`
//! sets `daemon.max-concurrent-jobs`; `COFFER_REPOSITORIES__MAIN__LOCATION=s3://b/p` sets
//! `repositories.main.location`; a number segment indexes an array
//! (`COFFER_ALERTS__ROUTE__0__TARGETS`). The value is read as a TOML value when it is one
//! (`4`, `true`, `["/srv", "/home"]`, `{ env = "PW" }`), else taken as a string.
//!
//! Invariant guarded here: only variables containing `__` are overrides, so the variables the
//! commands already read (`COFFER_PASSWORD`, `COFFER_CONFIG`, `COFFER_VAULT`, …) never
//! change the file by accident; and every error an override causes names the variable (its
//! values carry a span past the end of the file, which [`super::load`] maps back to it).

use std::borrow::Cow;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The prefix of every override variable.
pub const ENV_PREFIX: &str = "COFFER_";

/// One override read from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The variable, e.g. `COFFER_DAEMON__MAX_CONCURRENT_JOBS`.
    pub variable: String,
    /// The key path it sets, e.g. `["daemon", "max-concurrent-jobs"]`.
    pub path: Vec<String>,
    /// The raw value.
    pub value: String,
}

/// The overrides among `vars` (variables named `COFFER_…__…`), sorted by variable name so
/// the result does not depend on the environment's order.
pub fn overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut out: Vec<Override> = vars
        .into_iter()
        .filter_map(|(variable, value)| {
            let rest = variable.strip_prefix(ENV_PREFIX)?;
            if !rest.contains("__") {
                return None;
            }
            let path = rest.split("__").map(|s| s.to_ascii_lowercase().replace('_', "-")).collect();
            Some(Override { variable, path, value })
        })
        .collect();
    out.sort_by(|a, b| a.variable.cmp(&b.variable));
    out
}

/// The value of an override as the document holds it: a TOML value when the text is one,
/// else a string; every part spanned with `span` (the override's place past the file).
fn value_of<'i>(text: &'i str, span: &Range<usize>) -> Spanned<DeValue<'i>> {
    match DeValue::parse(text) {
        Ok(v) => respan(v.into_inner(), span),
        Err(_) => Spanned::new(span.clone(), DeValue::String(Cow::Borrowed(text))),
    }
}

fn respan<'i>(v: DeValue<'i>, span: &Range<usize>) -> Spanned<DeValue<'i>> {
    let v = match v {
        DeValue::Table(t) => DeValue::Table(
            t.into_iter()
                .map(|(k, v)| (Spanned::new(span.clone(), k.into_inner()), respan(v.into_inner(), span)))
                .collect(),
        ),
        DeValue::Array(a) => DeValue::Array(a.into_iter().map(|v| respan(v.into_inner(), span)).collect()),
        other => other,
    };
    Spanned::new(span.clone(), v)
}

/// The key of `table` that segment `seg` names: the key itself, else an existing key that
/// reads the same with `_` for `-` (a name such as `my_home` cannot be spelled otherwise in
/// a variable name).
fn key_in(table: &DeTable<'_>, seg: &str) -> Option<String> {
    if table.contains_key(seg) {
        return Some(seg.to_owned());
    }
    table.keys().find(|k| k.get_ref().replace('_', "-") == seg).map(|k| k.get_ref().to_string())
}

/// Sets `ov` in `root`, its values spanned with `span`.
///
/// # Errors
/// What is wrong with the path (the caller names the variable).
pub(super) fn apply<'i>(root: &mut DeTable<'i>, ov: &'i Override, span: &Range<usize>) -> Result<(), String> {
    let Some((last, parents)) = ov.path.split_last() else {
        return Err("names no key".into());
    };
    if ov.path.iter().any(String::is_empty) {
        return Err("has an empty level (`__` separates levels: COFFER_TABLE__KEY)".into());
    }
    // The root is moved into a value and back so that the walk treats it as any value.
    let mut whole = DeValue::Table(std::mem::take(root));
    let result = walk(&mut whole, ov, parents, last, span);
    if let DeValue::Table(t) = whole {
        *root = t;
    }
    result
}

fn walk<'i>(
    mut cur: &mut DeValue<'i>,
    ov: &'i Override,
    parents: &[String],
    last: &str,
    span: &Range<usize>,
) -> Result<(), String> {
    for (depth, seg) in parents.iter().enumerate() {
        let here = || if depth == 0 { "the top level".to_owned() } else { format!("`{}`", parents[..depth].join(".")) };
        cur = match cur {
            DeValue::Table(t) => {
                let key = key_in(t, seg).unwrap_or_else(|| seg.clone());
                if !t.contains_key(key.as_str()) {
                    t.insert(
                        Spanned::new(span.clone(), Cow::Owned(key.clone())),
                        Spanned::new(span.clone(), DeValue::Table(DeTable::new())),
                    );
                }
                t.get_mut(key.as_str()).map(Spanned::get_mut).ok_or_else(|| format!("cannot set {}", here()))?
            }
            DeValue::Array(a) => {
                let i: usize =
                    seg.parse().map_err(|_| format!("{} is an array: its level is an index, not `{seg}`", here()))?;
                let len = a.len();
                a.get_mut(i)
                    .map(Spanned::get_mut)
                    .ok_or_else(|| format!("{} has {len} entries, there is no index {i}", here()))?
            }
            other => return Err(format!("{} is a {}, not a table", here(), other.type_str())),
        };
    }
    let here = if parents.is_empty() { "the top level".to_owned() } else { format!("`{}`", parents.join(".")) };
    match cur {
        DeValue::Table(t) => {
            let key = key_in(t, last).unwrap_or_else(|| last.to_owned());
            t.insert(Spanned::new(span.clone(), Cow::Owned(key)), value_of(&ov.value, span));
            Ok(())
        }
        DeValue::Array(a) => {
            let i: usize =
                last.parse().map_err(|_| format!("{here} is an array: its level is an index, not `{last}`"))?;
            let len = a.len();
            let slot = a.get_mut(i).ok_or_else(|| format!("{here} has {len} entries, there is no index {i}"))?;
            *slot = value_of(&ov.value, span);
            Ok(())
        }
        other => Err(format!("{here} is a {}, not a table", other.type_str())),
    }
}
