//! `GET /ui`: the live cluster page, served from the binary. Its HTML, CSS, script
//! and icon are embedded at build time (`coordinator/ui/`); no CDN, no build step.
//! The page reads the same JSON API as the CLI (`/v1/cluster`, `/v1/nodes`,
//! `/v1/shards`, `/v1/moves`) once a second, and posts drain, undrain and rebalance
//! with the admin token the operator typed (kept in the tab's `sessionStorage`).
//!
//! Every answer carries a Content-Security-Policy that allows scripts, styles and
//! fetches from this origin only (no inline script or style, no framing, no form
//! submissions), and `X-Content-Type-Options: nosniff`.

use super::respond::{error, method_not_allowed, Resp};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Method, Response, StatusCode};
use torua_protocol::ErrorCode;

/// One embedded file.
struct Asset {
    /// The path under `/ui/` (`""` is the page itself).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/favicon.svg"),
    },
];

/// Everything from this origin, nothing inline, nothing framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// `/ui`, `/ui/` and `/ui/<asset>`: `rest` is the path after `ui`, split on `/`.
pub fn serve(method: &Method, rest: &[&str]) -> Resp {
    let name = match rest {
        [] | [""] => "",
        [one] => one,
        _ => return not_found(rest),
    };
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return not_found(rest);
    };
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, asset.content_type)
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::REFERRER_POLICY, "no-referrer")
        // Small, and replaced with every release: always revalidate.
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(Bytes::from_static(asset.body)))
        .expect("static headers are valid")
}

fn not_found(rest: &[&str]) -> Resp {
    error(
        ErrorCode::NotFound,
        format!("no UI asset /ui/{}", rest.join("/")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn get(rest: &[&str]) -> Resp {
        serve(&Method::GET, rest)
    }

    async fn body(r: Resp) -> String {
        let b = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    fn header(r: &Resp, name: header::HeaderName) -> &str {
        r.headers()
            .get(&name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_assets_answer_with_their_types_and_security_headers() {
        let cases: [(&[&str], &str); 5] = [
            (&[], "text/html"),
            (&[""], "text/html"),
            (&["app.js"], "text/javascript"),
            (&["app.css"], "text/css"),
            (&["favicon.svg"], "image/svg+xml"),
        ];
        for (rest, ty) in cases {
            let r = get(rest);
            assert_eq!(r.status(), StatusCode::OK, "{rest:?}");
            assert!(header(&r, header::CONTENT_TYPE).starts_with(ty), "{rest:?}");
            assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header(&r, header::CONTENT_SECURITY_POLICY), CSP);
            assert_eq!(header(&r, header::X_FRAME_OPTIONS), "DENY");
            assert!(!body(r).await.is_empty(), "{rest:?}");
        }
        let head = serve(&Method::HEAD, &["app.js"]);
        assert_eq!(head.status(), StatusCode::OK);
    }

    #[test]
    fn unknown_assets_and_other_methods_are_refused() {
        for rest in [&["nope.js"][..], &["app.js", "x"], &["..", "Cargo.toml"]] {
            let r = get(rest);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{rest:?}");
            assert_eq!(
                r.extensions().get::<ErrorCode>(),
                Some(&ErrorCode::NotFound)
            );
        }
        let r = serve(&Method::POST, &[]);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&r, header::ALLOW), "GET, HEAD");
    }

    #[test]
    fn the_csp_allows_nothing_inline_and_nothing_foreign() {
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'none'",
        ] {
            assert!(CSP.contains(directive), "{directive}");
        }
        assert!(!CSP.contains("unsafe"), "{CSP}");
        assert!(!CSP.contains("http"), "no foreign origin: {CSP}");
    }

    #[test]
    fn everything_together_stays_small() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(
            total < 200 * 1024,
            "the UI is {total} bytes; keep it under 200 KiB"
        );
    }

    fn text(name: &str) -> &'static str {
        let a = ASSETS.iter().find(|a| a.name == name).unwrap();
        std::str::from_utf8(a.body).unwrap()
    }

    #[test]
    fn the_page_loads_its_script_and_style_from_files_and_says_it_needs_js() {
        let html = text("");
        assert!(html.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="/ui/app.css">"#));
        assert!(html.contains(r#"href="/ui/favicon.svg""#));
        // The CSP forbids inline script and style: there must be none to forbid.
        assert_eq!(
            html.matches("<script").count(),
            1,
            "one external script only"
        );
        assert!(!html.contains("<style"), "no inline style element");
        assert!(!html.contains(" style="), "no style attributes");
        assert!(!has_inline_handler(html), "no inline event handlers");
        assert!(
            html.contains("<noscript>"),
            "a message for readers without JS"
        );
        assert!(!html.contains("://"), "no foreign URL (no CDN)");
        let js = text("app.js").replace("'http://www.w3.org/2000/svg'", "");
        assert!(!js.contains("://"), "no foreign URL in the script");
        assert!(
            !text("app.css").contains("://"),
            "no foreign URL in the style"
        );
    }

    /// An attribute like ` onclick=` in the markup.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(0);
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn every_element_the_script_looks_up_is_in_the_page() {
        let (html, js) = (text(""), text("app.js"));
        let mut looked_up = 0;
        for part in js.split("$('").skip(1) {
            let id = &part[..part.find('\'').unwrap()];
            assert!(
                html.contains(&format!(r#"id="{id}""#)),
                "app.js looks up #{id}, which index.html does not have"
            );
            looked_up += 1;
        }
        assert!(
            looked_up > 10,
            "found only {looked_up} lookups: has $() changed?"
        );
    }

    #[test]
    fn the_script_sends_the_token_as_a_header_and_keeps_it_per_tab() {
        let js = text("app.js");
        assert!(js.contains("sessionStorage"));
        assert!(
            !js.contains("localStorage"),
            "the token must not outlive the tab"
        );
        assert!(js.contains("'Bearer '"));
    }
}
