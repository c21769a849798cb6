//! HTTP plumbing shared by the core client, the notification link and the result proxy client.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, StatusCode, Url};

/// Longest body excerpt quoted in an error: enough to recognise an HTML error page or a
/// truncated JSON document, short enough for one log line.
const EXCERPT_CHARS: usize = 200;

/// A reqwest client that sends `Content-Type: application/json` on every request, as the Java
/// worker's Feign clients do (the core's controllers are mapped with that media type).
pub(crate) fn json_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .build()
}

/// reqwest is built without a TLS provider so that ring is used (it builds in seconds and needs
/// no C toolchain on the Pi); building a client without an installed provider would panic.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing an installation race to another thread leaves a provider in place: that is all
        // we need, so the error is not interesting.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A status and the whole body, read as text.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

/// Sends the request and reads the entire body.
pub(crate) async fn exchange(request: RequestBuilder) -> Result<Reply, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.text().await?;
    Ok(Reply { status, body })
}

/// `base` with `segments` appended as path segments (percent-encoded, so an identifier coming
/// from the network cannot climb out of its path). `None` for URLs that cannot carry a path.
pub(crate) fn join_segments(base: &Url, segments: &[&str]) -> Option<Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(segments);
    Some(url)
}

/// Parses an http(s) base URL; the error names what is wrong.
pub(crate) fn parse_base_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|error| error.to_string())?;
    match parsed.scheme() {
        "http" | "https" if !parsed.cannot_be_a_base() => Ok(parsed),
        scheme => Err(format!("scheme {scheme:?} is not http(s)")),
    }
}

/// The start of a body, cut on a character boundary, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    match body.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

/// The body without one pair of surrounding JSON quotes: the core serialises an enum reply as
/// a JSON string (`"PLEASE_CONTINUE"`) while a hand-written peer may send it bare.
pub(crate) fn strip_json_quotes(body: &str) -> &str {
    let trimmed = body.trim();
    trimmed
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_appended_after_a_base_path_and_escaped() {
        let base = Url::parse("http://core:13000/pool/").unwrap();
        let url = join_segments(&base, &["replicates", "0xab/../x", "updateStatus"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://core:13000/pool/replicates/0xab%2F..%2Fx/updateStatus"
        );
        let bare = Url::parse("http://core:13000").unwrap();
        assert_eq!(
            join_segments(&bare, &["version"]).unwrap().as_str(),
            "http://core:13000/version"
        );
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(parse_base_url("https://core.example/").is_ok());
        assert!(parse_base_url("mailto:core@example").is_err());
        assert!(parse_base_url("ftp://core.example").is_err());
        assert!(parse_base_url("core:13000").is_err());
    }

    #[test]
    fn excerpt_cuts_long_bodies_on_a_char_boundary() {
        let long = "é".repeat(EXCERPT_CHARS + 5);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }

    #[test]
    fn only_one_surrounding_quote_pair_is_stripped() {
        assert_eq!(strip_json_quotes("\"PLEASE_WAIT\""), "PLEASE_WAIT");
        assert_eq!(strip_json_quotes(" PLEASE_WAIT\n"), "PLEASE_WAIT");
        assert_eq!(strip_json_quotes("\"\"x\"\""), "\"x\"");
        assert_eq!(strip_json_quotes("\""), "\"");
    }
}
