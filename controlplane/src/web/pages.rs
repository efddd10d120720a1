//! The server-rendered pages of the web login flow: plain HTML forms that
//! work without JavaScript. Every text that did not come from this file
//! goes through [`escape`].

use std::fmt::Write as _;

use crate::broker::nfuse::AppEntry;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    layout_with_head(title, "", body)
}

fn layout_with_head(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{}</title>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}</head>\n\
         <body>\n<main>\n<h1>Gatehouse</h1>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// Seconds the push page shows before it reloads itself at its wait URL.
pub const PUSH_REFRESH_SECS: u32 = 1;

/// The push page: "Approve on your device and choose NN"; it reloads
/// itself at `wait_path` (a meta refresh: no JavaScript), which answers
/// once the device did or the wait is over.
pub fn push(number: &str, wait_path: &str) -> String {
    let head = format!(
        "\n<meta http-equiv=\"refresh\" content=\"{PUSH_REFRESH_SECS};url={}\">",
        escape(wait_path)
    );
    let body = format!(
        "<p class=\"info\" id=\"info\">A notification was sent to your device.</p>\n\
<p id=\"push\">Approve on your device and choose <strong id=\"number\">{}</strong></p>\n\
<p>This page updates by itself. <a href=\"{}\">Check now</a></p>\n\
<p><a href=\"/vpn/index.html\">Start over</a></p>\n",
        escape(number),
        escape(wait_path)
    );
    layout_with_head("Gatehouse: approve on your device", &head, &body)
}

/// The fallback when no push answer came: the OTP form (`prompt`,
/// posted to `/cgi/dlge`) under "Enter OTP manually", and "Resend
/// notification" (posted to `/cgi/pushresend`).
pub fn push_fallback(prompt: &str, notice_text: Option<&str>, error: Option<&str>) -> String {
    let mut body = String::new();
    notice(&mut body, "error", error);
    notice(&mut body, "info", notice_text);
    let _ = write!(
        body,
        "<h2 id=\"manual\">Enter OTP manually</h2>\n\
<form method=\"post\" action=\"/cgi/dlge\" autocomplete=\"off\">\n\
<p><label for=\"response\" id=\"prompt\">{}</label><br>\
<input id=\"response\" name=\"response\" type=\"password\" inputmode=\"numeric\" required autofocus></p>\n\
<p><button type=\"submit\" id=\"submit\">Submit</button></p>\n\
</form>\n\
<form method=\"post\" action=\"/cgi/pushresend\">\n\
<p><button type=\"submit\" id=\"resend\">Resend notification</button></p>\n\
</form>\n\
<p><a href=\"/vpn/index.html\">Start over</a></p>\n",
        escape(prompt)
    );
    layout("Gatehouse: verification", &body)
}

fn notice(out: &mut String, class: &str, message: Option<&str>) {
    if let Some(message) = message {
        let _ = writeln!(
            out,
            "<p class=\"{class}\" role=\"alert\" id=\"{class}\">{}</p>",
            escape(message)
        );
    }
}

/// The login form of PROTOCOLS.md §7 (`login`, `passwd`, `passwd1`,
/// posted to `/cgi/login`), with `error` shown above it.
pub fn login(error: Option<&str>, info: Option<&str>) -> String {
    let mut body = String::new();
    notice(&mut body, "error", error);
    notice(&mut body, "info", info);
    body.push_str(
        "<form method=\"post\" action=\"/cgi/login\" autocomplete=\"off\">\n\
<p><label for=\"login\">User name</label><br><input id=\"login\" name=\"login\" type=\"text\" required autofocus></p>\n\
<p><label for=\"passwd\">Password</label><br><input id=\"passwd\" name=\"passwd\" type=\"password\" required></p>\n\
<p><label for=\"passwd1\">Second password</label><br><input id=\"passwd1\" name=\"passwd1\" type=\"password\"></p>\n\
<p><button type=\"submit\">Log on</button></p>\n\
</form>\n",
    );
    layout("Gatehouse", &body)
}

/// The second-factor page: `prompt` (escaped), field `response`, posted
/// to `/cgi/dlge`.
pub fn challenge(prompt: &str, error: Option<&str>) -> String {
    let mut body = String::new();
    notice(&mut body, "error", error);
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/cgi/dlge\" autocomplete=\"off\">\n\
<p><label for=\"response\" id=\"prompt\">{}</label><br>\
<input id=\"response\" name=\"response\" type=\"password\" inputmode=\"numeric\" required autofocus></p>\n\
<p><button type=\"submit\">Submit</button></p>\n\
</form>\n\
<p><a href=\"/vpn/index.html\">Start over</a></p>\n",
        escape(prompt)
    );
    layout("Gatehouse: verification", &body)
}

/// The user's home page: the welcome, then (for a full session) the
/// store front's launch forms, one per entry of `apps` (`None`: no store
/// front), each posting `csrf` and `resource` to `/cgi/launch`.
pub fn home(display_name: &str, enrol_only: bool, apps: Option<&[AppEntry]>, csrf: &str) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p id=\"welcome\">Welcome, <span id=\"user\">{}</span>.</p>",
        escape(display_name)
    );
    match (enrol_only, apps) {
        (true, _) => body.push_str(
            "<p class=\"info\" id=\"info\">Register an authenticator, then log on again with its code.</p>\n",
        ),
        (false, None) => body.push_str(
            "<p id=\"apps\">Your applications and desktops: none are published here.</p>\n",
        ),
        (false, Some([])) => {
            body.push_str("<p id=\"apps\">Your applications and desktops: none yet.</p>\n");
        }
        (false, Some(apps)) => {
            body.push_str("<h2>Your applications and desktops</h2>\n<ul id=\"apps\">\n");
            for app in apps {
                let kind = if app.desktop { "desktop" } else { "app" };
                let _ = writeln!(
                    body,
                    "<li class=\"{kind}\"><form method=\"post\" action=\"/cgi/launch\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"resource\" value=\"{}\">\
<button type=\"submit\" class=\"launch\" data-resource=\"{}\">{}</button></form>{}</li>",
                    escape(csrf),
                    escape(&app.name),
                    escape(&app.name),
                    escape(&app.display),
                    app.description
                        .as_deref()
                        .map(|d| format!(" <span class=\"description\">{}</span>", escape(d)))
                        .unwrap_or_default(),
                );
            }
            body.push_str("</ul>\n");
        }
    }
    body.push_str(
        "<ul>\n<li><a href=\"/manageotp\">Manage authenticators</a></li>\n\
<li><a href=\"/cgi/logout\">Log off</a></li>\n</ul>\n",
    );
    layout("Gatehouse: home", &body)
}

/// A launch that did not happen: `message`, and the way back.
pub fn launch_error(message: &str) -> String {
    let mut body = String::new();
    notice(&mut body, "error", Some(message));
    body.push_str("<p><a href=\"/vpns/home.html\">Back to your applications</a></p>\n");
    layout("Gatehouse: launch", &body)
}

/// `/manageotp`: the devices with remove forms, the test form, the add
/// form; every form carries `csrf`.
pub fn manage(devices: &[String], csrf: &str, error: Option<&str>, info: Option<&str>) -> String {
    let mut body = String::new();
    notice(&mut body, "error", error);
    notice(&mut body, "info", info);
    let csrf = escape(csrf);
    body.push_str("<h2>Your authenticators</h2>\n");
    if devices.is_empty() {
        body.push_str("<p id=\"no-devices\">No authenticator is registered.</p>\n");
    } else {
        body.push_str("<ul id=\"devices\">\n");
        for device in devices {
            let device = escape(device);
            let _ = writeln!(
                body,
                "<li><span class=\"device\">{device}</span> \
<form method=\"post\" action=\"/manageotp/remove\" style=\"display:inline\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"device\" value=\"{device}\">\
<button type=\"submit\">Remove</button></form></li>"
            );
        }
        body.push_str("</ul>\n");
        let _ = write!(
            body,
            "<h2>Test a code</h2>\n<form method=\"post\" action=\"/manageotp/test\" autocomplete=\"off\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
<p><label for=\"code\">Code</label><br><input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" required></p>\n\
<p><button type=\"submit\">Test</button></p>\n</form>\n"
        );
    }
    let _ = write!(
        body,
        "<h2>Add an authenticator</h2>\n<form method=\"post\" action=\"/manageotp/add\" autocomplete=\"off\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
<p><label for=\"device\">Device name</label><br><input id=\"device\" name=\"device\" type=\"text\" maxlength=\"64\" required></p>\n\
<p><button type=\"submit\">Add</button></p>\n</form>\n\
<p><a href=\"/vpns/home.html\">Home</a> · <a href=\"/cgi/logout\">Log off</a></p>\n"
    );
    layout("Gatehouse: authenticators", &body)
}

/// The page after adding a device: its QR code (served at `qr_path`) and
/// the `otpauth://` URI as text.
pub fn enrolled(device: &str, qr_path: &str, uri: &str) -> String {
    let body = format!(
        "<p class=\"info\" id=\"info\">Scan this code with your authenticator app to add {}.</p>\n\
<p><img id=\"qr\" src=\"{}\" alt=\"QR code of the authenticator key\"></p>\n\
<p>Or enter this key URI by hand:<br><code id=\"uri\">{}</code></p>\n\
<p><a href=\"/manageotp\">Done</a></p>\n",
        escape(device),
        escape(qr_path),
        escape(uri)
    );
    layout("Gatehouse: new authenticator", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_is_escaped() {
        assert_eq!(
            escape("<script>\"a\"&'b'</script>\u{7}"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        let page = challenge("<b>PIN</b>", None);
        assert!(page.contains("&lt;b&gt;PIN&lt;/b&gt;"), "{page}");
        assert!(!page.contains("<b>PIN"), "{page}");
    }

    #[test]
    fn the_push_page_shows_the_number_and_reloads_itself_without_javascript() {
        let page = push("07", "/cgi/pushwait");
        assert!(
            page.contains("Approve on your device and choose <strong id=\"number\">07</strong>"),
            "{page}"
        );
        assert!(
            page.contains("<meta http-equiv=\"refresh\" content=\"1;url=/cgi/pushwait\">"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
        let fallback = push_fallback("Code", Some("No answer."), None);
        assert!(fallback.contains("Enter OTP manually"), "{fallback}");
        assert!(fallback.contains("action=\"/cgi/dlge\""), "{fallback}");
        assert!(
            fallback.contains("action=\"/cgi/pushresend\""),
            "{fallback}"
        );
        assert!(fallback.contains("Resend notification"), "{fallback}");
        assert!(!fallback.contains("http-equiv"), "{fallback}");
    }

    #[test]
    fn every_manageotp_form_carries_the_csrf_token() {
        let page = manage(&["phone".to_owned()], "abc123", None, None);
        assert_eq!(page.matches("<form").count(), 3);
        assert_eq!(page.matches("name=\"csrf\" value=\"abc123\"").count(), 3);
    }
}
