//! A TCP proxy on 127.0.0.1 that a test can cut and reopen, to stop a server "in the middle
//! of" a request without stopping the server process: test S3 servers lose their state
//! when restarted, so the fault is made between the client and the server instead.
//!
//! Cut means what a stopped server looks like to the client: every open connection is shut
//! down (the request in flight fails) and the port is closed, so new connections are
//! refused. Reopen binds the same port again. A cut can be armed to happen by itself once
//! the clients have sent a number of bytes, i.e. in the middle of an upload.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A proxy from a loopback port to `target`; stopped (threads joined) on drop.
#[derive(Debug)]
pub struct CutProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    port: u16,
    listener: Mutex<Option<TcpListener>>,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
    /// Bytes the clients sent through the proxy so far.
    sent: AtomicU64,
    /// Cut once `sent` reaches this (`u64::MAX`: never).
    cut_at: AtomicU64,
    cuts: AtomicU64,
    /// HTTP `HEAD` requests seen from the clients.
    heads: AtomicU64,
}

impl Shared {
    fn cut(&self) {
        // Close the port first, so nothing new is accepted while connections go down.
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = None;
        for c in self.conns.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.cut_at.store(u64::MAX, Ordering::SeqCst);
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

impl CutProxy {
    /// Starts a proxy to `127.0.0.1:target_port` on a free loopback port.
    ///
    /// # Panics
    /// If no port can be bound.
    #[must_use]
    pub fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            port,
            listener: Mutex::new(Some(listener)),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            cut_at: AtomicU64::new(u64::MAX),
            cuts: AtomicU64::new(0),
            heads: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || accept_loop(&s));
        Self { port, shared, acceptor: Some(acceptor) }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Bytes the clients have sent through the proxy so far.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    /// How many HTTP `HEAD` requests the clients sent (request lines starting a connection
    /// or following a line break: exact for requests without bodies, which is what a test
    /// counting them sends).
    #[must_use]
    pub fn head_requests(&self) -> u64 {
        self.shared.heads.load(Ordering::SeqCst)
    }

    /// How many times the proxy was cut.
    #[must_use]
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Cuts once the clients have sent `bytes` more than so far.
    pub fn cut_after(&self, bytes: u64) {
        self.shared.cut_at.store(self.sent().saturating_add(bytes), Ordering::SeqCst);
    }

    /// Cuts now: open connections are shut down, new ones refused.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Accepts connections again, on the same port.
    ///
    /// # Panics
    /// If the port cannot be bound again.
    pub fn reopen(&self) {
        let mut l = self.shared.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if l.is_none() {
            let listener = TcpListener::bind(("127.0.0.1", self.shared.port)).expect("bind the proxy port again");
            listener.set_nonblocking(true).expect("non-blocking listener");
            *l = Some(listener);
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cut();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(s: &Arc<Shared>) {
    while !s.stop.load(Ordering::SeqCst) {
        let accepted = {
            let l = s.listener.lock().unwrap_or_else(PoisonError::into_inner);
            l.as_ref().map(TcpListener::accept)
        };
        let client = match accepted {
            Some(Ok((c, _))) => c,
            _ => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(s.target) else { continue };
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) =
            (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
        else {
            continue;
        };
        s.conns.lock().unwrap_or_else(PoisonError::into_inner).extend([c3, s3]);
        let up = s.clone();
        std::thread::spawn(move || pump(client, server, Some(&up)));
        std::thread::spawn(move || pump(s2, c2, None));
    }
}

/// Copies `from` to `to` until either side closes; counts (and may cut on) client bytes.
fn pump(mut from: TcpStream, mut to: TcpStream, upload: Option<&Shared>) {
    const HEAD: &[u8] = b"\nHEAD /";
    let mut buf = vec![0u8; 64 << 10];
    // The last bytes seen, so a request line split between two reads is still counted.
    let mut tail = b"\n".to_vec();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(s) = upload {
            tail.extend_from_slice(&buf[..n]);
            let seen = tail.windows(HEAD.len()).filter(|w| *w == HEAD).count();
            tail.drain(..tail.len().saturating_sub(HEAD.len() - 1));
            s.heads.fetch_add(seen as u64, Ordering::SeqCst);
            let total = s.sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if total >= s.cut_at.load(Ordering::SeqCst) {
                // This chunk never arrives: the server saw half a request.
                s.cut();
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
