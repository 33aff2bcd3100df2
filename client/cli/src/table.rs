//! A plain text table with left-aligned, space-padded columns.
//!
//! Output is meant for a terminal and for `grep`/`awk`: one line per row, cells separated by at
//! least two spaces, no borders and no trailing spaces, so a cell never needs quoting as long as
//! it holds no double space.

use std::io::{self, Write};

/// Rows of cells under a header; a short row is padded with empty cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Spaces between two columns.
const GAP: usize = 2;

impl Table {
    /// An empty table with these column headers.
    pub fn new(header: Vec<String>) -> Table {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The rows so far, without the header.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// Writes the header and the rows, each column as wide as its widest cell.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in self.lines() {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for line in self.lines() {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map_or("", String::as_str);
                text.push_str(cell);
                if i + 1 < columns {
                    let pad = width - cell.chars().count() + GAP;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            // Empty trailing cells would otherwise leave padding at the end of the line.
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }

    fn lines(&self) -> impl Iterator<Item = &Vec<String>> {
        std::iter::once(&self.header).chain(&self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut table = Table::new(strings(&["stat", "a/h:1", "b/h:2"]));
        table.push(strings(&["curr_items", "3", "12345678"]));
        table.push(strings(&["pid", "", "9"]));
        table.push(strings(&["short"]));
        let mut out = Vec::new();
        table.write_to(&mut out).expect("write to a Vec");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "stat        a/h:1  b/h:2\n\
             curr_items  3      12345678\n\
             pid                9\n\
             short\n"
        );
    }
}
