//! Telegram's text rules: messages of at most 4096 UTF-16 code units, and HTML markup in which
//! `<`, `>` and `&` must be escaped. Agents write a little Markdown (code fences, `code`,
//! **bold**, [links](https://...)); it becomes HTML here, and everything else is escaped.

use crate::channel::split_fenced;

/// The longest message Telegram accepts, in UTF-16 code units of its text.
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// Splits text into messages within Telegram's limit, counted as Telegram counts, with code
/// blocks closed and reopened across messages.
pub fn split(text: &str) -> Vec<String> {
    split_fenced(text, MAX_MESSAGE_UNITS, char::len_utf16)
}

/// Escapes text for Telegram HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown-ish text to Telegram HTML. The visible text never grows, so a piece within the
/// length limit stays within it. Unbalanced markers are kept as literal text.
pub fn to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find("```") {
            Some(start) => {
                inline(&rest[..start], &mut out);
                let after = &rest[start + 3..];
                match after.find("```") {
                    Some(end) => {
                        let block = &after[..end];
                        // An info string on the fence's first line names the language.
                        let (lang, code) = match block.split_once('\n') {
                            Some((first, code))
                                if !first.trim().is_empty()
                                    && first.trim().chars().all(|c| {
                                        c.is_ascii_alphanumeric() || "+-_#.".contains(c)
                                    }) =>
                            {
                                (Some(first.trim()), code)
                            }
                            Some(("", code)) => (None, code),
                            _ => (None, block),
                        };
                        match lang {
                            Some(lang) => out.push_str(&format!(
                                "<pre><code class=\"language-{}\">{}</code></pre>",
                                escape(lang),
                                escape(code)
                            )),
                            None => out.push_str(&format!("<pre>{}</pre>", escape(code))),
                        }
                        rest = &after[end + 3..];
                    }
                    None => {
                        out.push_str(&escape(&rest[start..]));
                        rest = "";
                    }
                }
            }
            None => {
                inline(rest, &mut out);
                rest = "";
            }
        }
    }
    out
}

/// Inline markup: `code`, **bold**, [text](url).
fn inline(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '`'
            && let Some(end) = rest[1..].find('`')
            && end > 0
        {
            out.push_str(&format!("<code>{}</code>", escape(&rest[1..1 + end])));
            rest = &rest[end + 2..];
            continue;
        }
        if rest.starts_with("**")
            && let Some(end) = rest[2..].find("**")
            && end > 0
        {
            out.push_str(&format!("<b>{}</b>", escape(&rest[2..2 + end])));
            rest = &rest[end + 4..];
            continue;
        }
        if c == '['
            && let Some((label, url, used)) = link(rest)
        {
            out.push_str(&format!(
                "<a href=\"{}\">{}</a>",
                escape(url),
                escape(label)
            ));
            rest = &rest[used..];
            continue;
        }
        out.push_str(&escape(&rest[..c.len_utf8()]));
        rest = &rest[c.len_utf8()..];
    }
}

/// `[label](http...)` at the start of `text`: the label, the URL and the bytes used.
fn link(text: &str) -> Option<(&str, &str, usize)> {
    let close = text.find("](")?;
    let label = &text[1..close];
    if label.is_empty() || label.contains('\n') || label.contains('[') {
        return None;
    }
    let after = &text[close + 2..];
    let end = after.find(')')?;
    let url = &after[..end];
    let web = url.starts_with("https://") || url.starts_with("http://");
    if !web || url.contains(char::is_whitespace) {
        return None;
    }
    Some((label, url, close + 2 + end + 1))
}

/// The visible text of our HTML: tags removed and entities decoded (for tests).
#[cfg(test)]
pub fn visible(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_converts_the_markdown_agents_write() {
        assert_eq!(to_html("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(
            to_html("run `ls <dir>` now"),
            "run <code>ls &lt;dir&gt;</code> now"
        );
        assert_eq!(to_html("**bold** and **open"), "<b>bold</b> and **open");
        assert_eq!(
            to_html("```rust\nfn x() -> u8 { 1 }\n```"),
            "<pre><code class=\"language-rust\">fn x() -&gt; u8 { 1 }\n</code></pre>"
        );
        assert_eq!(to_html("```\n<b>\n```"), "<pre>&lt;b&gt;\n</pre>");
        assert_eq!(to_html("unclosed ``` fence <"), "unclosed ``` fence &lt;");
        assert_eq!(
            to_html("see [the docs](https://x.org/a?b=1&c=\"2\")"),
            "see <a href=\"https://x.org/a?b=1&amp;c=&quot;2&quot;\">the docs</a>"
        );
        assert_eq!(
            to_html("[no](javascript:alert(1))"),
            "[no](javascript:alert(1))"
        );
    }

    #[test]
    fn visible_text_never_grows_and_survives() {
        let samples = [
            "plain",
            "**a** `b` [c](https://d.e) ```\ncode <x>\n``` & < >",
            "``` `` ** [ ]( ) <<>> &&",
            "emoji 😀 **bold 😀** `😀`",
        ];
        for s in samples {
            let html = to_html(s);
            let shown = visible(&html);
            assert!(
                shown.encode_utf16().count() <= s.encode_utf16().count(),
                "{s}"
            );
            for word in ["plain", "code <x>", "😀", "&"] {
                if s.contains(word) {
                    assert!(shown.contains(word), "{s}: {shown}");
                }
            }
        }
    }

    #[test]
    fn splits_count_utf16_units() {
        let text = "😀".repeat(3000);
        let parts = split(&text);
        assert_eq!(parts.len(), 2);
        assert!(
            parts
                .iter()
                .all(|p| p.encode_utf16().count() <= MAX_MESSAGE_UNITS)
        );
        assert_eq!(parts.concat(), text);
    }
}
