//! A `sipsimd` node in the test's own process, built by `Node::build` as `serve` builds one.

use std::net::SocketAddr;
use std::sync::Arc;

use sipsim_core::Store;
use sipsim_server::config::Config;
use sipsim_server::node::Node;
use tokio_util::sync::CancellationToken;

/// A node serving on a free port of `127.0.0.1`; it stops when this is dropped.
pub struct Spawned {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database.
    pub store: Arc<dyn Store>,
    shutdown: CancellationToken,
}

impl Spawned {
    /// `http://` its address and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds the node `config` describes and serves it; panics (failing the test) if it cannot.
pub async fn spawn(config: &Config) -> Spawned {
    let node =
        Node::build(config).await.unwrap_or_else(|e| panic!("the test node does not build: {e:#}"));
    let store = node.store.clone();
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port on 127.0.0.1");
    let addr = listener.local_addr().expect("the node's address");
    let shutdown = CancellationToken::new();
    tokio::spawn(node.run(Some(listener), shutdown.clone()));
    Spawned { addr, store, shutdown }
}
