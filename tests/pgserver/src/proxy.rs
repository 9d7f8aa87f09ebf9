//! A TCP proxy in front of a test server whose connections a test can cut
//! all at once, as a network failure or a failover would: the client sees
//! its connection break in the middle of whatever it was doing.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Forwards 127.0.0.1:`port()` to a server's port, one thread pair per
/// connection.
pub struct CutProxy {
    port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl CutProxy {
    /// Starts forwarding to 127.0.0.1:`target` (for the life of the process).
    pub fn start(target: u16) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let tracked = open.clone();
        std::thread::Builder::new().name("cut-proxy".into()).spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                if let Err(error) = forward(client, server, &tracked) {
                    eprintln!("cut-proxy: {error}");
                }
            }
        })?;
        Ok(Self { port, open })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Breaks every connection open now; later ones go through.
    pub fn cut(&self) {
        for stream in self.open.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copies both ways on two threads; remembers both sockets for `cut`.
fn forward(client: TcpStream, server: TcpStream, open: &Mutex<Vec<TcpStream>>) -> io::Result<()> {
    let mut tracked = open.lock().unwrap_or_else(|e| e.into_inner());
    tracked.push(client.try_clone()?);
    tracked.push(server.try_clone()?);
    drop(tracked);
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let (mut server_read, mut client_write) = (server, client);
    std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Both);
    });
    Ok(())
}
