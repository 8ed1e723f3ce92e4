//! Key decoding and validation for `/v1/data/{key}` paths.

use percent_encoding::percent_decode_str;

/// Longest key, in bytes after percent-decoding.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is empty")]
    Empty,
    #[error("key is {0} bytes after percent-decoding; the limit is {MAX_KEY_BYTES}")]
    TooLong(usize),
    #[error("key is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    #[error("key contains control character U+{0:04X} at byte {1}")]
    Control(u32, usize),
}

/// Decodes the raw (still percent-encoded) path segment after `/v1/data/`.
/// `/` may appear literally or as `%2F`: both name the same key.
pub fn decode_key(raw: &str) -> Result<String, KeyError> {
    let key = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| KeyError::NotUtf8)?
        .into_owned();
    validate_key(&key)?;
    Ok(key)
}

pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    if let Some((at, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::Control(c as u32, at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, want: Result<&str, KeyError>) {
        assert_eq!(decode_key(raw), want.map(str::to_owned), "raw {raw:?}");
    }

    #[test]
    fn decoding_table() {
        check("plain", Ok("plain"));
        check("a/b/c", Ok("a/b/c"));
        check("a%2Fb", Ok("a/b"));
        check("a%2fb", Ok("a/b"));
        check("with%20space", Ok("with space"));
        check("user@host:8080", Ok("user@host:8080"));
        check("%E2%9C%93%20ok", Ok("✓ ok"));
        check("h%C3%A9", Ok("hé"));
        check("100%", Ok("100%")); // a lone % is not an escape and stays literal
        check("a+b", Ok("a+b"));
        check("", Err(KeyError::Empty));
        check("%00", Err(KeyError::Control(0, 0)));
        check("ab%0A", Err(KeyError::Control(0x0a, 2)));
        check("x%7F", Err(KeyError::Control(0x7f, 1)));
        check("%C2%85", Err(KeyError::Control(0x85, 0)));
        check("%FF", Err(KeyError::NotUtf8));
        check("%C3", Err(KeyError::NotUtf8));
        check(&"k".repeat(1024), Ok(&"k".repeat(1024)));
        check(&"k".repeat(1025), Err(KeyError::TooLong(1025)));
        check(&"%41".repeat(1025), Err(KeyError::TooLong(1025)));
    }
}
