//! The HTTP stack's floor for the upload benchmark (`benches/run.py`).
//!
//! A hyper server built like assetgate's (tokio multi-thread runtime with one
//! worker, HTTP/1 with keepalive, the body read whole) that answers every
//! request with tusd's "accept", `{}`, and checks nothing. It shows how many
//! pre-create requests per second this stack serves on the benchmark machine
//! before assetgate decides anything, so that the figures can tell the gate's
//! own cost from the framework's.
//!
//!     cargo run --release --example hyper_floor -- 127.0.0.1:9760

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

async fn accept(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body whole, as a hook must before it can decide.
    let _body = req.into_body().collect().await.map(|b| b.to_bytes());
    let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9760".into());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(&addr).await?;
            eprintln!("hyper_floor listening on {addr}");
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service_fn(accept))
                        .await;
                });
            }
        })
}
