//! `torua put|get|del KEY`: the data path through the coordinator.

use super::Api;
use bytes::Bytes;
use hyper::Method;
use std::io::{Read, Write};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Keys keep their `/` in the URL; everything else that is not unreserved is escaped.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn path(key: &str) -> String {
    format!("/v1/data/{}", utf8_percent_encode(key, KEY))
}

pub fn put(api: &Api, key: &str, value: &str) -> anyhow::Result<()> {
    let body = if value == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Bytes::from(buf)
    } else {
        Bytes::from(value.to_string())
    };
    api.call(Method::PUT, &path(key), body)?;
    Ok(())
}

pub fn get(api: &Api, key: &str) -> anyhow::Result<()> {
    let v = api.call(Method::GET, &path(key), Bytes::new())?;
    std::io::stdout().write_all(&v)?;
    Ok(())
}

pub fn del(api: &Api, key: &str) -> anyhow::Result<()> {
    api.call(Method::DELETE, &path(key), Bytes::new())?;
    Ok(())
}
