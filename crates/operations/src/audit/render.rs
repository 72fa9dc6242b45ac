//! The report's renderings: JSON (the [`super::Report`] itself, format
//! [`super::REPORT_VERSION`]), Markdown, and one self-contained HTML file (inline CSS, no
//! script, no external asset, printable).
//!
//! Invariant guarded here: every text that came from the repository or the policy file is
//! escaped for the format (HTML entities; Markdown's table and markup characters), so a
//! hostile snapshot path, tag, host or ledger body cannot inject markup or script.

use super::{Report, Status};
use std::fmt::Write as _;

/// A rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON, documented in `docs/audit.md`.
    Json,
    /// Markdown.
    Markdown,
    /// One self-contained HTML file.
    Html,
}

impl Format {
    /// `json`, `md`, `html`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Markdown => "md",
            Self::Html => "html",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "md" | "markdown" => Ok(Self::Markdown),
            "html" => Ok(Self::Html),
            _ => Err(format!("unknown report format {s:?} (expected html, md or json)")),
        }
    }
}

/// Renders `report` as `format`.
#[must_use]
pub fn render(report: &Report, format: Format) -> Vec<u8> {
    match format {
        Format::Json => {
            let mut v = serde_json::to_vec_pretty(report).expect("a report serialises");
            v.push(b'\n');
            v
        }
        Format::Markdown => markdown(report).into_bytes(),
        Format::Html => html(report).into_bytes(),
    }
}

fn t(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn digest_note(r: &Report) -> String {
    format!(
        "The BLAKE3 digest of this file is recorded in each audited repository's ledger (record kind `audit`, id {}); \
         compare `b3sum` of this file with it to show the report is the one generated.",
        r.id
    )
}

/// HTML-escapes `s` (text and attribute values).
#[must_use]
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `s` for Markdown text (also inside a table cell): markup and HTML characters
/// get a backslash or an entity, line breaks become spaces.
#[must_use]
pub fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Met => "MET",
        Status::NotMet => "NOT MET",
        Status::Unknown => "UNKNOWN",
    }
}

fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Backup & immutability policy: audit report\n");
    let _ = writeln!(
        o,
        "- Overall: **{}** ({} met, {} not met, {} unknown)",
        status_word(r.status()),
        r.met,
        r.not_met,
        r.unknown
    );
    let _ = writeln!(o, "- Generated: {} on host {}", t(r.generated), escape_md(&r.host));
    let _ = writeln!(o, "- Period: since {}", t(r.since));
    let _ = writeln!(o, "- Coffer {}", escape_md(&r.coffer_version));
    if let Some(c) = &r.config {
        let _ = writeln!(o, "- Policy file: {}", escape_md(c));
    }
    let _ = writeln!(o, "- Report id: {}\n", escape_md(&r.id));
    for repo in &r.repositories {
        let _ = writeln!(o, "## Repository {} ({})\n", escape_md(&repo.name), escape_md(&repo.location));
        let _ = writeln!(o, "| § | clause | status |\n| --- | --- | --- |");
        for c in &repo.clauses {
            let _ =
                writeln!(o, "| {} | {} | **{}** |", escape_md(&c.section), escape_md(&c.title), status_word(c.status));
        }
        let _ = writeln!(o);
        for c in &repo.clauses {
            let _ = writeln!(o, "### §{} {}: {}\n", escape_md(&c.section), escape_md(&c.title), status_word(c.status));
            let _ = writeln!(o, "> {}\n", escape_md(&c.policy));
            for why in &c.reasons {
                let _ = writeln!(o, "- **why:** {}", escape_md(why));
            }
            for e in &c.evidence {
                let _ = writeln!(o, "- {}", escape_md(e.trim_start()));
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "### Retention ceiling proof (§5)\n");
        match &repo.ceiling {
            Some(p) => {
                let _ = writeln!(o, "Holds: **{}**\n", if p.holds { "yes" } else { "no" });
                for line in &p.reasoning {
                    let _ = writeln!(o, "1. {}", escape_md(line));
                }
                if p.offenders_total > 0 {
                    let _ = writeln!(o, "\n{} snapshot(s) or object(s) break the bound:\n", p.offenders_total);
                    let _ = writeln!(o, "| kind | name | until | why |\n| --- | --- | --- | --- |");
                    for f in &p.offenders {
                        let _ = writeln!(
                            o,
                            "| {} | {} | {} | {} |",
                            escape_md(&f.kind),
                            escape_md(&f.name),
                            f.until.map_or_else(|| "-".to_owned(), t),
                            escape_md(&f.why)
                        );
                    }
                }
            }
            None => {
                let _ = writeln!(o, "Not computed: the snapshots or object locks could not be read.");
            }
        }
        if !repo.problems.is_empty() {
            let _ = writeln!(o, "\n### Problems reading the evidence\n");
            for p in &repo.problems {
                let _ = writeln!(o, "- {}", escape_md(p));
            }
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "---\n\n{}", escape_md(&digest_note(r)));
    o
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:60em;color:#111;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #444;margin-top:2em}h3{margin-bottom:.3em}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eee}.met{background:#d7f5dd;color:#0b5a1f}.not-met{background:#fadbd8;color:#8a1c12}.unknown{background:#fff1c2;color:#6b4e00}
.status{font-weight:bold;white-space:nowrap}blockquote{margin:.3em 0;padding:.3em 1em;border-left:4px solid #999;background:#f7f7f7}
.clause{border:1px solid #ccc;border-radius:4px;padding:.5em 1em;margin:1em 0;page-break-inside:avoid}
ul{margin:.3em 0}li.why{font-weight:bold}code,.mono{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}
.meta td:first-child{font-weight:bold;width:12em}footer{margin-top:3em;font-size:.85em;color:#444;border-top:1px solid #999;padding-top:.5em}
@media print{body{margin:0;max-width:none;font-size:10pt}h2{page-break-before:always}h2.first{page-break-before:avoid}.clause{page-break-inside:avoid}
.met,.not-met,.unknown{-webkit-print-color-adjust:exact;print-color-adjust:exact}a{color:inherit;text-decoration:none}}
";

fn html(r: &Report) -> String {
    let e = escape_html;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Coffer audit report {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        e(&t(r.generated))
    );
    let overall = r.status();
    let _ = writeln!(o, "<h1>Backup &amp; immutability policy: audit report</h1>");
    let _ = writeln!(
        o,
        "<p>Overall: <span class=\"status {}\">{}</span> — {} met, {} not met, {} unknown.</p>",
        overall.as_str(),
        status_word(overall),
        r.met,
        r.not_met,
        r.unknown
    );
    let _ = writeln!(o, "<table class=\"meta\">");
    for (k, v) in [
        ("Generated", t(r.generated)),
        ("Host", r.host.clone()),
        ("Period", format!("since {}", t(r.since))),
        ("Coffer version", r.coffer_version.clone()),
        ("Policy file", r.config.clone().unwrap_or_else(|| "-".into())),
        (
            "Repositories",
            r.repositories.iter().map(|x| format!("{} ({})", x.name, x.location)).collect::<Vec<_>>().join(", "),
        ),
        ("Report id", r.id.clone()),
    ] {
        let _ = writeln!(o, "<tr><td>{}</td><td class=\"mono\">{}</td></tr>", e(k), e(&v));
    }
    let _ = writeln!(o, "</table>");
    let _ = writeln!(
        o,
        "<h2 class=\"first\">Summary</h2>\n<table>\n<tr><th>Repository</th><th>§</th><th>Clause</th><th>Status</th></tr>"
    );
    for repo in &r.repositories {
        for c in &repo.clauses {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td><a href=\"#{}-{}\">{}</a></td><td class=\"status {}\">{}</td></tr>",
                e(&repo.name),
                e(&c.section),
                e(&repo.name),
                e(&c.id),
                e(&c.title),
                c.status.as_str(),
                status_word(c.status)
            );
        }
    }
    let _ = writeln!(o, "</table>");
    for repo in &r.repositories {
        let _ = writeln!(o, "<h2>Repository {} <span class=\"mono\">{}</span></h2>", e(&repo.name), e(&repo.location));
        for c in &repo.clauses {
            let _ = writeln!(o, "<div class=\"clause\" id=\"{}-{}\">", e(&repo.name), e(&c.id));
            let _ = writeln!(
                o,
                "<h3>§{} {} <span class=\"status {}\">{}</span></h3>",
                e(&c.section),
                e(&c.title),
                c.status.as_str(),
                status_word(c.status)
            );
            let _ = writeln!(o, "<blockquote>{}</blockquote>\n<ul>", e(&c.policy));
            for why in &c.reasons {
                let _ = writeln!(o, "<li class=\"why\">{}</li>", e(why));
            }
            for line in &c.evidence {
                let _ = writeln!(o, "<li>{}</li>", e(line.trim_start()));
            }
            let _ = writeln!(o, "</ul>\n</div>");
        }
        let _ = writeln!(
            o,
            "<div class=\"clause\" id=\"{}-ceiling-proof\">\n<h3>Retention ceiling proof (§5)</h3>",
            e(&repo.name)
        );
        match &repo.ceiling {
            Some(p) => {
                let s = if p.holds { Status::Met } else { Status::NotMet };
                let _ = writeln!(
                    o,
                    "<p>Data deleted at the source today is gone from every backup by <b>{}</b>; the bound (today + {} days) is <b>{}</b>: <span class=\"status {}\">{}</span></p>\n<ol>",
                    p.gone_by.map_or_else(|| "no date".to_owned(), t),
                    p.ceiling_days,
                    t(p.bound),
                    s.as_str(),
                    if p.holds { "HOLDS" } else { "DOES NOT HOLD" }
                );
                for line in &p.reasoning {
                    let _ = writeln!(o, "<li>{}</li>", e(line));
                }
                let _ = writeln!(o, "</ol>");
                if p.offenders_total > 0 {
                    let _ = writeln!(
                        o,
                        "<p>{} snapshot(s) or object(s) break the bound{}:</p>\n<table><tr><th>Kind</th><th>Name</th><th>Until</th><th>Why</th></tr>",
                        p.offenders_total,
                        if p.offenders_total > p.offenders.len() {
                            format!(" (the first {} listed)", p.offenders.len())
                        } else {
                            String::new()
                        }
                    );
                    for f in &p.offenders {
                        let _ = writeln!(
                            o,
                            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                            e(&f.kind),
                            e(&f.name),
                            e(&f.until.map_or_else(|| "-".to_owned(), t)),
                            e(&f.why)
                        );
                    }
                    let _ = writeln!(o, "</table>");
                }
            }
            None => {
                let _ = writeln!(
                    o,
                    "<p><span class=\"status unknown\">UNKNOWN</span> the snapshots or object locks could not be read.</p>"
                );
            }
        }
        let _ = writeln!(o, "</div>");
        if !repo.problems.is_empty() {
            let _ = writeln!(o, "<h3>Problems reading the evidence</h3>\n<ul>");
            for p in &repo.problems {
                let _ = writeln!(o, "<li>{}</li>", e(p));
            }
            let _ = writeln!(o, "</ul>");
        }
    }
    let _ = writeln!(
        o,
        "<footer><p>Generated {} on {} by Coffer {}.</p><p>{}</p></footer>\n</body>\n</html>",
        e(&t(r.generated)),
        e(&r.host),
        e(&r.coffer_version),
        e(&digest_note(r))
    );
    o
}
