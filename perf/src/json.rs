//! A flat JSON object writer for `--json` reports.
//!
//! Reports are one object of numbers, booleans and strings, with no nesting, so
//! that `perf/compare.sh` can read a field with one `sed` expression and needs
//! neither `jq` nor a JSON library here.

use std::fmt::Write as _;

/// Builds one flat JSON object, field by field, in insertion order.
///
/// Call [`JsonObject::new`], add fields, then [`JsonObject::finish`]. Keys are
/// written as given (callers use fixed snake_case names); string values are
/// escaped per RFC 8259.
#[derive(Debug, Clone)]
pub struct JsonObject {
    out: String,
    empty: bool,
}

impl Default for JsonObject {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonObject {
    /// Starts an empty object.
    pub fn new() -> Self {
        Self {
            out: String::from("{"),
            empty: true,
        }
    }

    /// Adds a string field.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        self.out.push('"');
        escape_into(&mut self.out, value);
        self.out.push('"');
        self
    }

    /// Adds an unsigned integer field.
    pub fn int(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// Adds a number with three decimals; NaN and infinities become `null`.
    pub fn num(mut self, key: &str, value: f64) -> Self {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.out, "{value:.3}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// Adds a boolean field.
    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// Closes the object and returns its text (one line, no trailing newline).
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        escape_into(&mut self.out, key);
        self.out.push_str("\":");
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_fields_in_order_without_nesting() {
        let text = JsonObject::new()
            .str("mode", "stream")
            .int("connections", 4)
            .num("gbps", 19.8765)
            .bool("sink_confirmed", true)
            .finish();
        assert_eq!(
            text,
            r#"{"mode":"stream","connections":4,"gbps":19.877,"sink_confirmed":true}"#
        );
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        let text = JsonObject::new().str("e", "a\"b\\c\nd\u{1}").finish();
        assert_eq!(text, r#"{"e":"a\"b\\c\nd\u0001"}"#);
    }

    #[test]
    fn writes_null_for_numbers_that_are_not_finite() {
        let text = JsonObject::new()
            .num("x", f64::NAN)
            .num("y", f64::INFINITY)
            .finish();
        assert_eq!(text, r#"{"x":null,"y":null}"#);
    }

    #[test]
    fn writes_an_empty_object() {
        assert_eq!(JsonObject::new().finish(), "{}");
    }
}
