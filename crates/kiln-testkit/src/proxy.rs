//! A TCP proxy whose open connections a test can cut, as a flaky network would.

use tokio_util::sync::CancellationToken;

/// A TCP proxy in front of a server whose connections a test can cut, as a flaky network
/// would; it keeps the text of every request head that went through it.
pub struct CuttableProxy {
    /// `http://127.0.0.1:port` of the proxy.
    pub url: String,
    cut: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    /// The head of every request that went through.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// While set, every new connection is closed at once (see [`CuttableProxy::down`]).
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
}

impl CuttableProxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub async fn start(target: std::net::SocketAddr) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = std::sync::Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut2, requests2, stop2, down2) =
            (cut.clone(), requests.clone(), stop.clone(), down.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = stop2.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                if down2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let token = cut2.lock().unwrap().clone();
                let requests = requests2.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = tokio::io::AsyncReadExt::read(&mut cr, &mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            let text = String::from_utf8_lossy(&buf[..n]).to_string();
                            if text.starts_with("GET ") || text.starts_with("POST ") {
                                requests.lock().unwrap().push(text);
                            }
                            tokio::io::AsyncWriteExt::write_all(&mut sw, &buf[..n]).await?;
                        }
                    };
                    let down = tokio::io::copy(&mut sr, &mut cw);
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        CuttableProxy { url, cut, requests, down, stop }
    }

    /// Drops every open connection (new ones go through).
    pub fn cut(&self) {
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    /// The server behind goes away, as far as its clients can tell: every open connection is
    /// dropped and each new one closed at once, until [`CuttableProxy::up`].
    pub fn down(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
    }

    /// The server behind is back: new connections go through again.
    pub fn up(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The proxy's `127.0.0.1:port`.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
