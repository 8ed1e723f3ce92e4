//! `tcp` check: pass when a TCP connection to `addr` opens (`connected`).

use super::{describe_io, Outcome};

pub async fn probe(addr: &str) -> Outcome {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => Outcome::pass("connected"),
        Err(e) => Outcome::fail(describe_io(&e)),
    }
}
