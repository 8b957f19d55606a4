//! The metrics endpoint's HTTP: reading a request (with `httparse`, within size and header
//! limits) and routing it. Only `GET` (and `HEAD`) of `/metrics` is served; other paths are
//! 404, other methods 405. Pure: the fuzz crate runs [`route`] on arbitrary bytes.

/// A request's head (request line and headers) longer than this is refused with 431.
pub const MAX_HEAD: usize = 8192;
/// More headers than this are refused with 431.
pub const MAX_HEADERS: usize = 32;

/// What a request asks for, once its head is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Not all of the head has arrived yet (and it is within [`MAX_HEAD`]).
    Incomplete,
    /// `GET /metrics` (`head`: a `HEAD`, answered without the body).
    Metrics { head: bool },
    /// 404: any other path.
    NotFound,
    /// 405: any other method.
    MethodNotAllowed,
    /// 431: a head over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] headers.
    TooLarge,
    /// 400: not HTTP/1.x.
    BadRequest,
}

/// Whether a client has sent all it needs to for an answer.
pub fn complete(buf: &[u8]) -> bool {
    route(buf) != Route::Incomplete
}

/// Reads the request in `buf` (what the client has sent so far).
pub fn route(buf: &[u8]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Route::TooLarge,
        Ok(httparse::Status::Partial) => Route::Incomplete,
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => Route::TooLarge,
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or_default();
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            if path != "/metrics" {
                return Route::NotFound;
            }
            match req.method.unwrap_or_default() {
                "GET" => Route::Metrics { head: false },
                "HEAD" => Route::Metrics { head: true },
                _ => Route::MethodNotAllowed,
            }
        }
        Err(httparse::Error::TooManyHeaders) => Route::TooLarge,
        Err(_) => Route::BadRequest,
    }
}

/// The whole answer to a request routed as `route` (`body`: the metrics page, asked for only
/// when the route needs it).
pub fn respond(route: Route, body: impl FnOnce() -> String) -> Vec<u8> {
    let (status, extra, body) = match route {
        Route::Metrics { .. } => ("200 OK", "", body()),
        Route::NotFound => ("404 Not Found", "", "only /metrics is served\n".into()),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            "only GET and HEAD of /metrics\n".into(),
        ),
        Route::TooLarge => (
            "431 Request Header Fields Too Large",
            "",
            format!("at most {MAX_HEAD} bytes and {MAX_HEADERS} headers\n"),
        ),
        Route::BadRequest | Route::Incomplete => {
            ("400 Bad Request", "", "not an HTTP/1.x request\n".into())
        }
    };
    let ctype = if matches!(route, Route::Metrics { .. }) {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !matches!(route, Route::Metrics { head: true }) {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases: &[(&[u8], Route)] = &[
            (
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Route::Metrics { head: false },
            ),
            (
                b"GET /metrics?x=1 HTTP/1.0\r\n\r\n",
                Route::Metrics { head: false },
            ),
            (
                b"HEAD /metrics HTTP/1.1\r\n\r\n",
                Route::Metrics { head: true },
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Route::MethodNotAllowed),
            (b"DELETE /metrics HTTP/1.1\r\n\r\n", Route::MethodNotAllowed),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", Route::Incomplete),
            (b"GET /met", Route::Incomplete),
            (b"", Route::Incomplete),
            (b"\x16\x03\x01\x02\x00", Route::BadRequest),
            (b"GET /metrics SMTP/1.1\r\n\r\n", Route::BadRequest),
        ];
        for (req, want) in cases {
            assert_eq!(route(req), *want, "{:?}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn limits() {
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 1, b'a');
        assert_eq!(route(&big), Route::TooLarge, "a head that never ends");
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
        assert_eq!(route(req.as_bytes()), Route::TooLarge);
    }

    #[test]
    fn answers() {
        let ok = respond(Route::Metrics { head: false }, || "a 1\n".into());
        let text = String::from_utf8(ok).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 4\r\n") && text.ends_with("\r\n\r\na 1\n"));
        let head =
            String::from_utf8(respond(Route::Metrics { head: true }, || "a 1\n".into())).unwrap();
        assert!(head.contains("Content-Length: 4\r\n") && head.ends_with("\r\n\r\n"));
        let nope = String::from_utf8(respond(Route::MethodNotAllowed, || unreachable!())).unwrap();
        assert!(nope.starts_with("HTTP/1.1 405 ") && nope.contains("Allow: GET, HEAD\r\n"));
        let nf = String::from_utf8(respond(Route::NotFound, || unreachable!())).unwrap();
        assert!(nf.starts_with("HTTP/1.1 404 "));
    }
}
