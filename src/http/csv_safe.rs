//! CSV that is safe to open in a spreadsheet. A cell that begins with `=`, `+`, `-`, `@`, a tab
//! or a carriage return is read by spreadsheet programs as a formula, so a name or memo typed
//! into Homeward could run in the commissioner's spreadsheet (CSV or formula injection). Every
//! CSV Homeward serves passes through [`defuse`], which prefixes such a cell with `'` (shown as
//! text, and visibly so) unless the cell is a number, such as a negative amount.

use std::borrow::Cow;

/// Rewrites a CSV document with every formula-like cell prefixed by `'`.
pub fn defuse(csv_bytes: &[u8]) -> Result<Vec<u8>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv_bytes);
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    for record in reader.records() {
        let record = record?;
        let cells: Vec<Cow<'_, str>> = record.iter().map(defuse_cell).collect();
        writer.write_record(cells.iter().map(|c| c.as_bytes()))?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// `'` before a cell a spreadsheet would take for a formula.
pub fn defuse_cell(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') if cell.parse::<f64>().is_err() => {
            Cow::Owned(format!("'{cell}"))
        }
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_become_text_and_numbers_stay_numbers() {
        let input = "name,amount\n=HYPERLINK(\"x\"),-1500\n@SUM(A1),+3\n\"\tcmd\",12\n-cmd|' /C calc'!A0,0.5\nplain,\"a, b\"\n";
        let out = String::from_utf8(defuse(input.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out,
            "name,amount\n\"'=HYPERLINK(\"\"x\"\")\",-1500\n'@SUM(A1),+3\n'\tcmd,12\n'-cmd|' /C calc'!A0,0.5\nplain,\"a, b\"\n"
        );
    }
}
