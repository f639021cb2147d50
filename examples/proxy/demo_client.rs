//! A simulated client: one keep-alive connection to the proxy, every
//! request saying it comes from one address (`X-Forwarded-For`, which the
//! proxy believes only from a trusted peer).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::trust::FORWARDED_FOR;

/// One client's connection to the proxy.
pub struct Session {
    ip: IpAddr,
    host: String,
    sender: SendRequest<Empty<Bytes>>,
}

impl Session {
    /// Opens a connection to the proxy at `proxy` for the client `ip`.
    ///
    /// # Errors
    ///
    /// The connect or handshake error, as text.
    pub async fn connect(proxy: SocketAddr, ip: IpAddr) -> Result<Session, String> {
        let stream = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Session {
            ip,
            host: proxy.to_string(),
            sender,
        })
    }

    /// Sends `GET path` and reads the whole answer.
    ///
    /// # Errors
    ///
    /// A failed send or read (the connection was dropped), as text.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), String> {
        let req = Request::get(path)
            .header(HOST, &self.host)
            .header(FORWARDED_FOR, self.ip.to_string())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    }
}
