//! Text and `--json` output (the JSON documents themselves are the views of [`crate::views`]).
//!
//! Every command prints either text for people or, with `--json`, exactly one JSON document
//! (compact, one line, then a newline) on stdout. Listings stream: they write each page as
//! it arrives, as table rows or as elements of the document's array, so memory does not
//! grow with the size of the vault. Nothing here ever prints a secret: credentials appear
//! only as the paths of their files.
//!
//! Writes go through one buffered lock on stdout; a write error (including a closed pipe)
//! is returned, never a panic, so `main` can exit 0 on `BrokenPipe` as ripgrep does.

use anyhow::{Context as _, Result};
use coffer_store::DefaultRetention;
use jiff::Timestamp;
use serde::Serialize;
use std::fmt::Display;
use std::io::{BufWriter, StdoutLock, Write};

const WRITE_ERR: &str = "cannot write to stdout";

/// Stdout, in text or JSON mode.
pub struct Output {
    json: bool,
    w: BufWriter<StdoutLock<'static>>,
    /// Inside a streamed JSON array: whether the next element is the first.
    first_item: bool,
}

impl Output {
    /// Buffered stdout; `json` selects machine output.
    pub fn new(json: bool) -> Self {
        Self { json, w: BufWriter::new(std::io::stdout().lock()), first_item: true }
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Writes one JSON document.
    pub fn doc(&mut self, value: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.w, value).map_err(std::io::Error::from).context(WRITE_ERR)?;
        self.w.write_all(b"\n").context(WRITE_ERR)
    }

    /// Writes one line of text.
    pub fn line(&mut self, text: impl Display) -> Result<()> {
        writeln!(self.w, "{text}").context(WRITE_ERR)
    }

    /// Writes raw bytes (object data).
    pub fn bytes(&mut self, data: &[u8]) -> Result<()> {
        self.w.write_all(data).context(WRITE_ERR)
    }

    /// Starts a streamed document `{"name":[`, with `header` fields before the array.
    pub fn begin_list(&mut self, header: &[(&str, &str)], name: &str) -> Result<()> {
        self.w.write_all(b"{").context(WRITE_ERR)?;
        for (k, v) in header {
            serde_json::to_writer(&mut self.w, k).map_err(std::io::Error::from).context(WRITE_ERR)?;
            self.w.write_all(b":").context(WRITE_ERR)?;
            serde_json::to_writer(&mut self.w, v).map_err(std::io::Error::from).context(WRITE_ERR)?;
            self.w.write_all(b",").context(WRITE_ERR)?;
        }
        serde_json::to_writer(&mut self.w, name).map_err(std::io::Error::from).context(WRITE_ERR)?;
        self.w.write_all(b":[").context(WRITE_ERR)?;
        self.first_item = true;
        Ok(())
    }

    /// Writes one element of the streamed array.
    pub fn list_item(&mut self, value: &impl Serialize) -> Result<()> {
        if !self.first_item {
            self.w.write_all(b",").context(WRITE_ERR)?;
        }
        self.first_item = false;
        serde_json::to_writer(&mut self.w, value).map_err(std::io::Error::from).context(WRITE_ERR)
    }

    /// Ends the streamed document.
    pub fn end_list(&mut self) -> Result<()> {
        self.w.write_all(b"]}\n").context(WRITE_ERR)
    }

    /// Writes `rows` as aligned columns, with a header line when `header` is set. A column is
    /// as wide as its minimum, its header and its widest cell in these rows: a listing written
    /// page by page keeps fixed-width columns aligned and aligns the others within each page.
    /// The last column is not padded.
    pub fn table(&mut self, columns: &[(&str, Align, usize)], rows: &[Vec<String>], header: bool) -> Result<()> {
        let mut widths: Vec<usize> = columns.iter().map(|(h, _, min)| h.chars().count().max(*min)).collect();
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut write_row = |cells: &mut dyn Iterator<Item = &str>| -> Result<()> {
            let mut line = String::new();
            for (i, cell) in cells.enumerate() {
                let last = i + 1 == columns.len();
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                match columns[i].1 {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        if !last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            writeln!(self.w, "{line}").context(WRITE_ERR)
        };
        if header {
            write_row(&mut columns.iter().map(|(h, _, _)| *h))?;
        }
        for row in rows {
            write_row(&mut row.iter().map(String::as_str))?;
        }
        Ok(())
    }

    /// Flushes stdout.
    pub fn finish(mut self) -> Result<()> {
        self.w.flush().context(WRITE_ERR)
    }
}

/// Alignment of a table column.
#[derive(Clone, Copy, Debug)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A time for people: RFC 3339, whole seconds.
pub fn time(t: Timestamp) -> String {
    format!("{t:.0}")
}

/// A key for a table cell: as is, or quoted and escaped if it holds control characters.
pub fn key_cell(key: &str) -> String {
    if key.chars().any(char::is_control) { format!("{key:?}") } else { key.to_owned() }
}

/// A default retention for people: `compliance 90d`, or `none`.
pub fn default_retention_text(d: Option<DefaultRetention>) -> String {
    d.map_or_else(|| "none".to_owned(), |d| format!("{} {}", d.mode, crate::parse::format_period(d.period)))
}
