//! In-process HTTP tests: real nodes on 127.0.0.1:0 talking to each other.
