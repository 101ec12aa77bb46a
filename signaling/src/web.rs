//! The web client's files, embedded in the binary.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../client-web/"]
#[exclude = "tests/*"]
#[exclude = "node_modules/*"]
#[exclude = "test-output/*"]
#[exclude = "*.json"]
struct Assets;

/// Serves `path` from the embedded client, or 404.
pub(crate) fn asset(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_string()),
                (header::CACHE_CONTROL, "no-cache".to_string()),
            ],
            file.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_client_is_embedded() {
        let files: Vec<String> = Assets::iter().map(|f| f.to_string()).collect();
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        for f in &files {
            assert!(
                !f.starts_with("tests/")
                    && !f.starts_with("test-output/")
                    && !f.contains("node_modules"),
                "{f} is embedded"
            );
        }
    }
}
