//! A real HTTP/1.1 receiver on 127.0.0.1 for webhook and heartbeat tests: a thread with a
//! `TcpListener` that records every request (method, path, headers, body) and answers with a
//! chosen status, or accepts and never answers (a hanging target).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `POST`, `GET`, ….
    pub method: String,
    /// The path (with any query).
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// With this status.
    Status(u16),
    /// Never: reads the request, records it, and holds the connection open.
    Hang,
}

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    answer: Option<Answer>,
}

/// The running receiver (stops accepting when dropped; the thread stays parked on accept).
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl Receiver {
    /// Starts a receiver answering `answer`.
    ///
    /// # Panics
    /// When no port can be bound.
    #[must_use]
    pub fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new((Mutex::new(Shared { requests: Vec::new(), answer: Some(answer) }), Condvar::new()));
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Self { addr, shared }
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the answer from now on.
    pub fn set_answer(&self, answer: Answer) {
        self.shared.0.lock().unwrap().answer = Some(answer);
    }

    /// The requests so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.shared.0.lock().unwrap().requests.clone()
    }

    /// Waits until at least `n` requests came (at most `timeout`); the requests so far.
    #[must_use]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap();
        while g.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = cv.wait_timeout(g, left).unwrap().0;
        }
        g.requests.clone()
    }
}

/// A URL where nothing listens (connection refused): a port bound, then released.
#[must_use]
pub fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    format!("http://{addr}")
}

fn serve(conn: TcpStream, shared: &(Mutex<Shared>, Condvar)) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else { return };
        let (method, path) = (method.to_owned(), path.to_owned());
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = {
            let (m, cv) = shared;
            let mut g = m.lock().unwrap();
            g.requests.push(Request { method, path, headers, body });
            cv.notify_all();
            g.answer.unwrap_or(Answer::Status(200))
        };
        match answer {
            Answer::Status(code) => {
                let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok");
                if (&conn).write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            Answer::Hang => {
                // Holds the connection until the client gives up.
                let mut sink = [0u8; 1];
                let _ = (&conn).read(&mut sink);
                return;
            }
        }
    }
}
