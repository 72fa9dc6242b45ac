//! Where an S3 store is: `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=BOOL]`.

use crate::error::{Result, StoreError};
use std::fmt;

/// The bucket, key prefix and endpoint of an S3 store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket: empty, or ending in `/`. Every key the store is asked
    /// about lives under it, and listings strip it.
    pub prefix: String,
    /// Endpoint URL (e.g. `http://127.0.0.1:9000`); `None` for AWS S3.
    pub endpoint: Option<String>,
    /// Region; `None` takes it from the AWS configuration chain (or `us-east-1` with an endpoint).
    pub region: Option<String>,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`): the default with an explicit
    /// endpoint, because S3-compatible services rarely have per-bucket host names.
    pub path_style: bool,
}

impl S3Location {
    /// A location in `bucket` under `prefix` on AWS S3.
    #[must_use]
    pub fn new(bucket: impl Into<String>, prefix: &str) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: normalize_prefix(prefix),
            endpoint: None,
            region: None,
            path_style: false,
        }
    }

    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=true|false]`.
    ///
    /// # Errors
    /// `InvalidRequest` naming what is wrong.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| StoreError::invalid(format!("s3 location {url:?}: {why}"));
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("must start with s3://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if !valid_bucket(bucket) {
            return Err(bad("bucket names are 3 to 63 characters of a-z, 0-9, '.' and '-'"));
        }
        let mut loc =
            Self::new(bucket, &percent_decode(prefix).ok_or_else(|| bad("malformed %-escape in the prefix"))?);
        let mut path_style = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| bad("malformed %-escape in the query"))?;
            match k {
                "endpoint" => {
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        return Err(bad("endpoint must be an http:// or https:// URL"));
                    }
                    loc.endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                "region" if !v.is_empty() => loc.region = Some(v),
                "path-style" => {
                    path_style = Some(match v.as_str() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("path-style must be true or false")),
                    });
                }
                other => {
                    return Err(bad(&format!("unknown parameter {other:?} (expected endpoint, region, path-style)")));
                }
            }
        }
        loc.path_style = path_style.unwrap_or(loc.endpoint.is_some());
        Ok(loc)
    }

    /// The full S3 key of a store key.
    #[must_use]
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl fmt::Display for S3Location {
    /// `s3://BUCKET/PREFIX` — the endpoint is left out (it is not part of the name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

fn normalize_prefix(p: &str) -> String {
    let p = p.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') { p.to_owned() } else { format!("{p}/") }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && !b.starts_with(['.', '-'])
        && !b.ends_with(['.', '-'])
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::S3Location;

    #[test]
    fn parses_bucket_prefix_and_parameters() {
        let l =
            S3Location::parse("s3://backups/host%201/repo?endpoint=http://127.0.0.1:9000/&region=eu-west-1").unwrap();
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "host 1/repo/");
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(l.region.as_deref(), Some("eu-west-1"));
        assert!(l.path_style, "an explicit endpoint defaults to path style");
        assert_eq!(l.full_key("config"), "host 1/repo/config");
        assert_eq!(l.to_string(), "s3://backups/host 1/repo/");

        let l = S3Location::parse("s3://backups").unwrap();
        assert_eq!((l.prefix.as_str(), l.endpoint.as_deref(), l.path_style), ("", None, false));
        let l = S3Location::parse("s3://backups/?endpoint=https://s3.example&path-style=false").unwrap();
        assert!(!l.path_style);
    }

    #[test]
    fn rejects_malformed_locations() {
        for bad in [
            "backups",
            "s3://",
            "s3://Bk",
            "s3://UPPER/x",
            "s3://-bucket",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?colour=blue",
            "s3://bucket?path-style=maybe",
            "s3://bucket/%zz",
        ] {
            let e = S3Location::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest, "{bad}");
        }
    }
}
