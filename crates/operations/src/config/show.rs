//! The policy file as `coffer config show` prints it: the effective values (after overrides
//! and defaults), with everything that could be a credential taken out.
//!
//! Invariant guarded here: **nothing shown is a secret.** Secrets are references in the
//! schema already ([`super::SecretRef`] serializes as its file or variable name, never read
//! here); URLs lose their userinfo, query and fragment (a token often rides there); a
//! heartbeat URL keeps only its scheme and host, because the ping URL itself is the
//! credential (anyone who knows it can report success). A PostgreSQL connection string
//! cannot hold a password (validation refuses one).

use super::Config;

/// What `show` puts where a part of a URL was taken out.
const ELIDED: &str = "…";

/// `config` with its credential-bearing values redacted, for display.
#[must_use]
pub fn redacted(config: &Config) -> Config {
    let mut c = config.clone();
    for w in c.alerts.webhook.values_mut() {
        w.url = url_without_secrets(&w.url);
    }
    for h in c.alerts.heartbeat.values_mut() {
        h.url = url_origin(&h.url);
    }
    for r in c.repositories.values_mut() {
        if let Some(loc) = &r.location {
            r.location = Some(location_without_userinfo(loc));
        }
    }
    c
}

/// The URL without userinfo, query and fragment.
fn url_without_secrets(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            let had_query = u.query().is_some() || u.fragment().is_some();
            // Neither fails on an http(s) URL (the only kind validation lets through).
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let mut s = u.to_string();
            if had_query {
                s.push('?');
                s.push_str(ELIDED);
            }
            s
        }
        Err(_) => ELIDED.to_owned(),
    }
}

/// Only `scheme://host[:port]/…`.
fn url_origin(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/{ELIDED}", u.scheme()),
            (Some(h), None) => format!("{}://{h}/{ELIDED}", u.scheme()),
            _ => ELIDED.to_owned(),
        },
        Err(_) => ELIDED.to_owned(),
    }
}

/// A repository location with any `user:password@` removed from it and from its endpoint
/// (the query of an `s3://` location holds only `endpoint`, `region` and `path-style`,
/// which are not secret and are needed to tell where the repository is).
fn location_without_userinfo(loc: &str) -> String {
    let Some((head, query)) = loc.split_once('?') else {
        return strip_userinfo(loc);
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, v)) => format!("{k}={}", strip_userinfo(v)),
            None => p.to_owned(),
        })
        .collect();
    format!("{}?{}", strip_userinfo(head), pairs.join("&"))
}

fn strip_userinfo(s: &str) -> String {
    let Some(i) = s.find("://") else { return s.to_owned() };
    let rest = &s[i + 3..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        // `%40` is an escaped `@`: an escaped authority cannot be split reliably, so drop it.
        Some(at) => format!("{}{}", &s[..i + 3], &rest[at + 1..]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(
            url_without_secrets("https://u:p@hooks.example.com/x/y?token=abc#f"),
            "https://hooks.example.com/x/y?…"
        );
        assert_eq!(url_without_secrets("https://hooks.example.com/x"), "https://hooks.example.com/x");
        assert_eq!(url_origin("https://hc-ping.com/8f1e-uuid"), "https://hc-ping.com/…");
        assert_eq!(url_origin("http://127.0.0.1:8000/ping/abc"), "http://127.0.0.1:8000/…");
        assert_eq!(
            location_without_userinfo("s3://bucket/p?endpoint=http://k:s@127.0.0.1:9000&region=r"),
            "s3://bucket/p?endpoint=http://127.0.0.1:9000&region=r"
        );
        assert_eq!(location_without_userinfo("/srv/vault"), "/srv/vault");
    }
}
