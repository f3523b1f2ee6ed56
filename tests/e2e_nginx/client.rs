//! A keep-alive HTTP/1.1 client that sends the request target byte for byte.

use super::*;

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `[value]` header as written by the differential server.
    pub(crate) fn bracketed(&self, name: &str) -> String {
        let v = self.header(name).unwrap_or("");
        v.strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v)
            .to_string()
    }
}

pub(crate) struct Client {
    pub(crate) addr: SocketAddr,
    pub(crate) conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    pub(crate) fn get(&mut self, target: &[u8]) -> Resp {
        self.get_with(target, &[])
    }

    pub(crate) fn get_with(&mut self, target: &[u8], headers: &[(&str, &str)]) -> Resp {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: assetgate.test\r\n");
        for (k, v) in headers {
            req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        for _ in 0..2 {
            let reused = self.conn.is_some();
            if !reused {
                let s =
                    TcpStream::connect(self.addr).unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_nodelay(true).unwrap();
                self.conn = Some(BufReader::new(s));
            }
            let conn = self.conn.as_mut().unwrap();
            let result = conn.get_mut().write_all(&req).and_then(|()| read_response(conn));
            match result {
                Ok(Some(r)) => {
                    if r.header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        self.conn = None;
                    }
                    return r;
                }
                // The server closed an idle keep-alive connection: reconnect once.
                Ok(None) | Err(_) if reused => self.conn = None,
                Ok(None) => panic!("{}: closed without a response to {}", self.addr, show(target)),
                Err(e) => panic!("{}: {e} while requesting {}", self.addr, show(target)),
            }
        }
        panic!("{}: no response to {}", self.addr, show(target));
    }
}

/// Reads one response; `None` if the connection was closed before it began.
pub(crate) fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Resp>> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    let status_line = String::from_utf8_lossy(&line).into_owned();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(bad("connection closed in the response head".into()));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(bad("chunked responses are not expected from these servers".into()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().map_err(|_| bad(format!("bad content-length {v:?}"))))
        .transpose()?
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(Resp {
        status,
        headers,
        body,
    }))
}

/// A request target as an escaped string, for messages.
pub(crate) fn show(target: &[u8]) -> String {
    format!("\"{}\"", target.escape_ascii())
}

/// Sum of the samples of a Prometheus family whose labels contain `filter`.
pub(crate) fn metric_sum(text: &str, family: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(filter))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("bad metric line {l:?}"))
        })
        .sum()
}

pub(crate) fn gate_metrics(gate: &Daemon) -> String {
    let (status, _, body) = common::get(gate.addr, "/metrics", &[]);
    assert_eq!(status, 200, "GET /metrics");
    String::from_utf8(body).unwrap()
}

/// Unix time as seconds with a fraction.
pub(crate) fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}
