//! How the CLI prints: aligned tables and colour for people, one JSON document for scripts.

use std::io::IsTerminal;

use serde::Serialize;

use super::Failure;

/// The output mode of one run.
pub struct Out {
    pub json: bool,
    color: bool,
}

/// ANSI colours used.
#[derive(Clone, Copy)]
pub enum Color {
    Green,
    Red,
    Yellow,
    Dim,
    Bold,
}

impl Out {
    pub fn new(json: bool) -> Self {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Out { json, color }
    }

    /// `text` in `color` when writing to a terminal.
    pub fn paint(&self, color: Color, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match color {
            Color::Green => "32",
            Color::Red => "31",
            Color::Yellow => "33",
            Color::Dim => "2",
            Color::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Prints one JSON document.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot print JSON: {e}"),
        }
    }

    /// Prints one JSON document on one line (a stream of them reads as NDJSON).
    pub fn json_line<T: Serialize + ?Sized>(&self, value: &T) {
        match serde_json::to_string(value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot print JSON: {e}"),
        }
    }

    /// Prints rows as columns padded to the widest cell, with a header line.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: Vec<String>| {
            let last = cells.len().saturating_sub(1);
            cells
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == last {
                        c
                    } else {
                        let pad = widths[i].saturating_sub(c.chars().count());
                        format!("{c}{}", " ".repeat(pad + 2))
                    }
                })
                .collect::<String>()
        };
        let head = line(header.iter().map(|h| (*h).to_owned()).collect());
        println!("{}", self.paint(Color::Bold, &head));
        for row in rows {
            println!("{}", line(row.clone()));
        }
    }

    /// Reports a failure: one line on stderr, or `{"error": …}` on stdout with `--json`.
    pub fn failure(&self, failure: &Failure) {
        if failure.silent {
            return;
        }
        if self.json {
            let mut value =
                serde_json::json!({ "error": failure.message, "exit_code": failure.code });
            if let Some(status) = failure.status {
                value["status"] = status.into();
            }
            if let Some(id) = &failure.request_id {
                value["request_id"] = id.clone().into();
            }
            self.json(&value);
        } else {
            let request = failure
                .request_id
                .as_deref()
                .map(|id| format!(" [request {id}]"))
                .unwrap_or_default();
            eprintln!("error: {}{request}", failure.message);
        }
    }
}
