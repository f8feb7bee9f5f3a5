//! The floor for bench/authorize.sh: the same HTTP stack as `tollguard serve` (axum on hyper,
//! TCP_NODELAY, the same runtime) answering `POST /v1/authorize` with a fixed body and
//! `POST /v1/calls/{id}/end` with 204, with no engine, no lock and no store.
//!
//!     floor 127.0.0.1:8091

use axum::routing::post;
use axum::serve::ListenerExt as _;
use axum::Router;

const ANSWER: &str = r#"{"call_id":"x","allow":true,"max_duration_s":null,"rules":[],"explanation":[]}"#;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8091".into());
    let app = Router::new()
        .route(
            "/v1/authorize",
            post(|_body: axum::body::Bytes| async { ([("content-type", "application/json")], ANSWER) }),
        )
        .route("/v1/calls/{id}/end", post(|| async { axum::http::StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind").tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.expect("serve");
}
