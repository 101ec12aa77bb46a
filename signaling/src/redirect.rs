//! Plain HTTP that sends every request to HTTPS (`--http-redirect`), so
//! that `http://calls.example.org/call/abc` still opens the call.

use axum::Router;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use tokio::net::TcpListener;
use tracing::warn;

/// Serves redirects on `listener` to the HTTPS server on `https_port`.
pub(crate) fn spawn(listener: TcpListener, https_port: u16) -> tokio::task::JoinHandle<()> {
    let app = Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        redirect(&headers, &uri, https_port)
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("http redirect stopped: {e}");
        }
    })
}

fn redirect(headers: &HeaderMap, uri: &Uri, https_port: u16) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_only);
    match host {
        Some(host) => Redirect::permanent(&location(host, uri, https_port)).into_response(),
        None => (
            axum::http::StatusCode::BAD_REQUEST,
            "use https:// with this server's name",
        )
            .into_response(),
    }
}

/// The host of a Host header, without its port; `None` if it is not a
/// plausible host name or address (nothing that could redirect elsewhere
/// than the name the client asked for).
fn host_only(host: &str) -> Option<&str> {
    let name = match host.strip_prefix('[') {
        Some(v6) => &host[..v6.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    ok.then_some(name)
}

/// `https://host[:port]/path?query`.
fn location(host: &str, uri: &Uri, https_port: u16) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_to_the_same_name_over_https() {
        let uri: Uri = "/call/abc?x=1".parse().expect("uri");
        assert_eq!(
            location("calls.example.org", &uri, 443),
            "https://calls.example.org/call/abc?x=1"
        );
        assert_eq!(
            location("127.0.0.1", &uri, 8443),
            "https://127.0.0.1:8443/call/abc?x=1"
        );
        assert_eq!(host_only("calls.example.org:80"), Some("calls.example.org"));
        assert_eq!(host_only("[::1]:80"), Some("[::1]"));
        assert_eq!(host_only("evil.example/@x"), None);
        assert_eq!(host_only(""), None);
    }
}
