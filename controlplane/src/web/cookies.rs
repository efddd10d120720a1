//! Reading the `Cookie` header and writing `Set-Cookie` values.

use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie (PROTOCOLS.md §7).
pub const SESSION: &str = "NSC_AAAC";

/// The error cookie of a failed login.
pub const ERROR: &str = "NSC_VPNERR";

/// The cookie naming a login that waits for its second factor.
pub const PENDING: &str = "GH_PENDING";

/// The error code of a failed login.
pub const LOGIN_FAILED: &str = "4001";

/// The value of cookie `name` in `headers` (the first one), if any.
pub fn get<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly, Secure, SameSite=Strict, on `path`;
/// `max_age` seconds (`Some(0)` deletes it, `None` lasts the browser
/// session). `value` must be cookie-safe (tokens, digits).
pub fn set(name: &str, value: &str, path: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age
        .map(|age| format!("; Max-Age={age}"))
        .unwrap_or_default();
    let text = format!("{name}={value}; Path={path}{age}; HttpOnly; Secure; SameSite=Strict");
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
}

/// Parses an `application/x-www-form-urlencoded` body into `(name,
/// value)` pairs; the first of each name is what [`field`] finds.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `name` in a parsed form (empty when absent).
pub fn field<'f>(form: &'f [(String, String)], name: &str) -> &'f str {
    form.iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; NSC_AAAC_X=2"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("NSC_AAAC=tok; b=3"),
        );
        assert_eq!(get(&headers, SESSION), Some("tok"));
        assert_eq!(get(&headers, "b"), Some("3"));
        assert_eq!(get(&headers, "c"), None);
    }

    #[test]
    fn set_cookie_has_the_protective_attributes() {
        let value = set(SESSION, "abc", "/", None);
        assert_eq!(
            value.to_str().unwrap(),
            "NSC_AAAC=abc; Path=/; HttpOnly; Secure; SameSite=Strict"
        );
        let gone = set(PENDING, "", "/cgi", Some(0));
        assert!(gone.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let parsed = form(b"login=al%69ce&passwd=a+b%26c&login=second");
        assert_eq!(field(&parsed, "login"), "alice");
        assert_eq!(field(&parsed, "passwd"), "a b&c");
        assert_eq!(field(&parsed, "passwd1"), "");
    }
}
