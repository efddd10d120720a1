//! Human tables: one row per item, one column per field (in the order
//! the fields first appear), values shown compactly.

use std::fmt::Write as _;

use serde_json::Value;

/// `value` as a table: a list of objects as rows, one object as a one-row
/// table, anything else as its JSON; `null` as nothing.
pub(crate) fn render(value: &Value) -> String {
    let rows: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Null => return String::new(),
        Value::Array(items) => {
            if items.is_empty() {
                return "(none)\n".to_owned();
            }
            match items
                .iter()
                .map(Value::as_object)
                .collect::<Option<Vec<_>>>()
            {
                Some(rows) => rows,
                None => return format!("{value}\n"),
            }
        }
        Value::Object(map) => vec![map],
        other => return format!("{other}\n"),
    };
    let mut columns: Vec<&str> = Vec::new();
    for row in &rows {
        for key in row.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(row.get(*c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    line(&mut out, &header, &widths);
    for row in &cells {
        line(&mut out, row, &widths);
    }
    out
}

fn line(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut text = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        let _ = write!(text, "{cell:<width$}  ");
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_objects_become_aligned_rows_with_a_header() {
        let value = serde_json::json!([
            {"name": "g1", "kind": "shared"},
            {"name": "group-two", "kind": "private", "exclusive": true},
        ]);
        let text = render(&value);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("KIND"), "{text}");
        assert!(lines[1].contains("g1"));
        assert!(lines[2].contains("true"));
        assert!(lines[1].ends_with('-'), "missing fields show as -: {text}");
    }

    #[test]
    fn an_empty_list_says_none() {
        assert_eq!(render(&serde_json::json!([])), "(none)\n");
    }
}
