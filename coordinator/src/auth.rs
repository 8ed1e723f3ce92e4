//! Who may call which coordinator route: the bearer-token scopes.
//!
//! Two scopes, each with its own token (`admin_token_file`, `client_token_file`):
//! **admin** for every mutating admin route (drain, undrain, node removal, shard
//! pins, rebalance, and the leader's internal routes that followers call), and
//! **client** for the data path (`/v1/data/…`, `/data/…`). The admin token also opens
//! the data path, like a superuser's: an operator who may remove nodes may read keys.
//! A scope without a configured token is open, which `config` allows only on a
//! loopback listener or with `insecure_no_auth`. Status reads, `/metrics`, the probes
//! and `/ui` (static files; the page calls the admin routes with the token typed into
//! it) are open; heartbeats carry their own HMAC.
//!
//! Pure: the router asks [`scope_of`] and [`authorize`] before it routes anything,
//! including a call a follower would forward to the leader.

use crate::secrets::Tokens;
use hyper::Method;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Client,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Client => "client",
        }
    }
}

/// The scope a request needs, from its method and path alone; None for open routes.
/// Any method on a data path needs the client scope (a wrong method is then a 405
/// for the authorised only); only mutating methods on admin paths need the admin one.
pub fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    if path == "/v1/data" || path.starts_with("/v1/data/") || path.starts_with("/data/") {
        return Some(Scope::Client);
    }
    let reads = method == Method::GET || method == Method::HEAD;
    let admin_path = path.starts_with("/v1/nodes/")
        || path.starts_with("/v1/shards/")
        || path == "/v1/rebalance"
        || path.starts_with("/v1/internal/");
    (admin_path && !reads).then_some(Scope::Admin)
}

/// Whether `authorization` (the header's value, if any) may call a route of
/// `scope`. A scope without a configured token lets everyone in; the admin token
/// is also good for the client scope.
pub fn authorize(tokens: &Tokens, scope: Scope, authorization: Option<&str>) -> bool {
    let given = authorization.and_then(|v| v.strip_prefix("Bearer "));
    let admin_ok = |g: &str| tokens.admin.as_ref().is_some_and(|t| t.matches(g));
    match scope {
        Scope::Admin => match (&tokens.admin, given) {
            (None, _) => true,
            (Some(_), Some(g)) => admin_ok(g),
            (Some(_), None) => false,
        },
        Scope::Client => match (&tokens.client, given) {
            (None, _) => true,
            (Some(t), Some(g)) => t.matches(g) || admin_ok(g),
            (Some(_), None) => false,
        },
    }
}

/// The refusal's message: which token the route wants.
pub fn refusal(scope: Scope) -> &'static str {
    match scope {
        Scope::Admin => "this route needs `Authorization: Bearer <admin token>`",
        Scope::Client => {
            "the data path needs `Authorization: Bearer <client token>` (or the admin token)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Token;

    #[test]
    fn every_route_has_the_scope_it_needs() {
        use Scope::*;
        let (get, put, post, del, head) = (
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::HEAD,
        );
        #[rustfmt::skip]
        let cases: &[(&Method, &str, Option<Scope>)] = &[
            (&get, "/v1/data/k", Some(Client)),
            (&put, "/v1/data/a/b", Some(Client)),
            (&del, "/v1/data/k", Some(Client)),
            (&post, "/v1/data/k", Some(Client)),
            (&get, "/v1/data", Some(Client)),
            (&get, "/data/k", Some(Client)),
            (&put, "/data/k", Some(Client)),
            (&post, "/v1/nodes/n1/drain", Some(Admin)),
            (&post, "/v1/nodes/n1/undrain", Some(Admin)),
            (&del, "/v1/nodes/n1", Some(Admin)),
            (&put, "/v1/shards/3", Some(Admin)),
            (&post, "/v1/rebalance", Some(Admin)),
            (&post, "/v1/internal/shards/3/evict", Some(Admin)),
            (&get, "/v1/nodes/n1", None),
            (&head, "/v1/shards/3", None),
            (&get, "/v1/nodes", None),
            (&get, "/v1/shards", None),
            (&get, "/shards", None),
            (&get, "/v1/cluster", None),
            (&get, "/v1/moves", None),
            (&get, "/v1/leader", None),
            (&get, "/metrics", None),
            (&get, "/livez", None),
            (&get, "/readyz", None),
            (&get, "/health", None),
            (&get, "/ui", None),
            (&get, "/ui/app.js", None),
            (&post, "/v1/heartbeat", None),
            (&get, "/v1/database", None),
        ];
        for (m, p, want) in cases {
            assert_eq!(scope_of(m, p), *want, "{m} {p}");
        }
    }

    #[test]
    fn tokens_open_their_scope_and_admin_opens_both() {
        let both = Tokens {
            admin: Some(Token::new("adm")),
            client: Some(Token::new("cli")),
        };
        let admin_only = Tokens {
            admin: Some(Token::new("adm")),
            client: None,
        };
        let none = Tokens::default();
        use Scope::*;
        #[rustfmt::skip]
        let cases: &[(&Tokens, Scope, Option<&str>, bool)] = &[
            (&both, Admin, Some("Bearer adm"), true),
            (&both, Admin, Some("Bearer cli"), false),
            (&both, Admin, Some("Bearer adm2"), false),
            (&both, Admin, Some("adm"), false),
            (&both, Admin, Some("Bearer "), false),
            (&both, Admin, None, false),
            (&both, Client, Some("Bearer cli"), true),
            (&both, Client, Some("Bearer adm"), true),
            (&both, Client, Some("Bearer cl"), false),
            (&both, Client, Some("Basic cli"), false),
            (&both, Client, None, false),
            (&admin_only, Client, None, true),
            (&admin_only, Admin, None, false),
            (&none, Admin, None, true),
            (&none, Client, Some("Bearer whatever"), true),
        ];
        for (i, (tokens, scope, header, want)) in cases.iter().enumerate() {
            assert_eq!(
                authorize(tokens, *scope, *header),
                *want,
                "case {i}: {scope:?} {header:?}"
            );
        }
    }
}
