//! A TCP proxy on loopback between a browser and a hub, for the browser
//! tests: it can cut every connection (the network dies: no close frame
//! either way), refuse new ones for a while (the network stays down), lose
//! what the hub sends (a half-dead link: acks lost), and point at another
//! hub (a restarted node on a new port, or another node of a cluster) while
//! the page keeps its URL and origin.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The proxy; dropping it stops it and cuts its connections.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

#[derive(Debug)]
struct Shared {
    backend: Mutex<SocketAddr>,
    blocked: AtomicBool,
    conns: Mutex<Vec<Conn>>,
}

#[derive(Debug)]
struct Conn {
    task: AbortHandle,
    /// While set, bytes from the hub are read and dropped.
    deaf: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy on a free loopback port to `backend`.
    pub async fn start(backend: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            backend: Mutex::new(backend),
            blocked: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.blocked.load(Ordering::SeqCst) {
                    drop(client); // the network is down
                    continue;
                }
                let backend = *s.backend.lock().expect("proxy lock");
                let deaf = Arc::new(AtomicBool::new(false));
                let d = deaf.clone();
                let task = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(backend).await {
                        pipe(client, server, d).await;
                    }
                });
                let mut conns = s.conns.lock().expect("proxy lock");
                conns.retain(|c| !c.task.is_finished());
                conns.push(Conn {
                    task: task.abort_handle(),
                    deaf,
                });
            }
        })
        .abort_handle();
        Ok(Proxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where the browser connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// New connections go to `backend` (open ones stay where they are).
    pub fn retarget(&self, backend: SocketAddr) {
        *self.shared.backend.lock().expect("proxy lock") = backend;
    }

    /// Closes every open connection at the TCP level, without a WebSocket
    /// close frame either way.
    pub fn cut(&self) {
        for c in self.shared.conns.lock().expect("proxy lock").drain(..) {
            c.task.abort();
        }
    }

    /// While `on`, new connections are closed as soon as they are accepted.
    pub fn block(&self, on: bool) {
        self.shared.blocked.store(on, Ordering::SeqCst);
    }

    /// What the hub sends on the open connections is lost from now on
    /// (what the browser sends still arrives).
    pub fn deafen(&self) {
        for c in self.shared.conns.lock().expect("proxy lock").iter() {
            c.deaf.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, deaf: Arc<AtomicBool>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if deaf.load(Ordering::SeqCst) {
                        continue;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    // Either side ending ends both (as a dead network would).
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
