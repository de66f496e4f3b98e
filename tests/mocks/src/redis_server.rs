//! A private, real `redis-server` for tests that stop and restart Redis (the shared test server of
//! `scripts/test-services.sh` must stay up for everyone else). Not a mock: the installed binary runs
//! on a loopback port without persistence and is killed by PID when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long [`PrivateRedis::start`] waits for the server to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running private redis-server.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// A loopback port that was free a moment ago (for a server started, killed and restarted on it).
    pub fn free_port() -> std::io::Result<u16> {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
    }

    /// Starts redis-server on `port` and waits until it answers `PING`. Fails when redis-server is
    /// not installed (`scripts/test-services.sh` installs it) or does not come up.
    pub async fn start(port: u16) -> std::io::Result<Self> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .spawn()?;
        let redis = Self {
            port,
            child: Some(child),
        };
        let url = redis.url();
        let answered = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                if ping(&url).await {
                    return;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })
        .await;
        match answered {
            Ok(()) => Ok(redis),
            Err(_) => Err(std::io::Error::other(format!(
                "private redis-server on port {port} did not answer PING"
            ))),
        }
    }

    /// Starts redis-server on a free port.
    pub async fn start_on_free_port() -> std::io::Result<Self> {
        Self::start(Self::free_port()?).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (SIGKILL) and waits for it to exit; later commands fail until a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh, empty one on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        *self = Self::start(self.port).await?;
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .is_ok()
}
