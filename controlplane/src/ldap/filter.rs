//! Search filters built from user input (RFC 4515) and group names read
//! from DNs (RFC 4514). Pure functions: no I/O.

use std::borrow::Cow;

/// Longest login name sent to the directory.
pub const MAX_LOGIN_LEN: usize = 256;

/// Escapes a value for use inside a filter (RFC 4515 §3): `*`, `(`, `)`,
/// `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`; everything else,
/// UTF-8 included, stays as it is. After this, user input is one assertion
/// value and can never add a wildcard or a clause.
pub fn escape_value(value: &str) -> Cow<'_, str> {
    ldap3::ldap_escape(value)
}

/// `(&(<attribute>=<login escaped>)<extra>)`: the filter that finds a
/// user by login name. `attribute` and `extra` come from the
/// configuration (validated there); only `login` is user input.
pub fn user_filter(attribute: &str, extra: &str, login: &str) -> String {
    format!("(&({attribute}={}){extra})", escape_value(login))
}

/// `(&<extra>(<member_attribute>=<dn escaped>))`: the groups that list
/// `dn` as a member.
pub fn group_filter(extra: &str, member_attribute: &str, dn: &str) -> String {
    format!("(&{extra}({member_attribute}={}))", escape_value(dn))
}

/// Whether `login` may be sent to the directory at all: 1 to
/// [`MAX_LOGIN_LEN`] bytes, no control characters. Others are refused
/// like an unknown user.
pub fn is_plausible_login(login: &str) -> bool {
    !login.is_empty() && login.len() <= MAX_LOGIN_LEN && !login.chars().any(char::is_control)
}

/// The value of the first RDN of `dn`, unescaped (RFC 4514 §2.4): the
/// name of a group given by its DN (`cn=VPN Users,ou=groups,...` gives
/// `VPN Users`). `None` when `dn` has no `=` or a bad escape.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut out = Vec::with_capacity(rest.len());
    let mut bytes = rest.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b',' | b'+' => break,
            b'\\' => {
                let first = bytes.next()?;
                if first.is_ascii_hexdigit() {
                    let second = bytes.next()?;
                    let text = [first, second];
                    let text = std::str::from_utf8(&text).ok()?;
                    out.push(u8::from_str_radix(text, 16).ok()?);
                } else {
                    out.push(first);
                }
            }
            _ => out.push(byte),
        }
    }
    let value = String::from_utf8(out).ok()?;
    Some(value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_filter_special_character() {
        assert_eq!(escape_value("alice"), "alice");
        assert_eq!(escape_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape_value("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(escape_value("jürgen"), "jürgen");
    }

    #[test]
    fn an_injection_attempt_stays_one_assertion() {
        let filter = user_filter("uid", "(objectClass=person)", "*)(uid=*");
        assert_eq!(filter, "(&(uid=\\2a\\29\\28uid=\\2a)(objectClass=person))");
        assert!(ldap3::parse_filter(&filter).is_ok());
        let filter = user_filter("uid", "(objectClass=*)", "x)(|(uid=*");
        assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
    }

    #[test]
    fn builds_the_group_filter_around_an_escaped_dn() {
        assert_eq!(
            group_filter(
                "(objectClass=groupOfNames)",
                "member",
                "cn=a\\2C b (x),dc=t"
            ),
            "(&(objectClass=groupOfNames)(member=cn=a\\5c2C b \\28x\\29,dc=t))"
        );
    }

    #[test]
    fn refuses_implausible_logins() {
        assert!(is_plausible_login("alice"));
        assert!(is_plausible_login("alice@example.com"));
        assert!(!is_plausible_login(""));
        assert!(!is_plausible_login("al\0ice"));
        assert!(!is_plausible_login("al\nice"));
        assert!(!is_plausible_login(&"a".repeat(MAX_LOGIN_LEN + 1)));
    }

    #[test]
    fn reads_the_name_of_a_group_from_its_dn() {
        let cases = [
            (
                "cn=vpn-users,ou=groups,dc=example,dc=test",
                Some("vpn-users"),
            ),
            ("CN=VPN Users,OU=Groups,DC=corp", Some("VPN Users")),
            ("cn=Smith\\, John,ou=x", Some("Smith, John")),
            ("cn=caf\\C3\\A9,ou=x", Some("café")),
            ("cn=a+uid=b,ou=x", Some("a")),
            ("no-equals-sign", None),
            ("cn=bad\\", None),
            ("cn=bad\\ZZ", Some("badZZ")),
            ("cn=bad\\4", None),
        ];
        for (dn, expected) in cases {
            assert_eq!(first_rdn_value(dn).as_deref(), expected, "{dn}");
        }
    }
}
