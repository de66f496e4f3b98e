//! The processes a run measures: started (optionally pinned to a core with `taskset`), awaited
//! until they answer, and killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::BenchError;

/// A child process killed (and reaped) on drop.
pub struct BenchProcess {
    name: String,
    child: Child,
}

impl BenchProcess {
    /// Starts `program` with `args` and exactly the variables in `env` (the caller's environment
    /// is not inherited, so a stray `DATABASE_URL` cannot change what is measured), pinned to
    /// `core` when given. Output goes to `log` (created) so a chatty child never blocks on a pipe.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        core: Option<usize>,
        log: &Path,
    ) -> Result<Self, BenchError> {
        let mut command = match core {
            Some(core) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(core.to_string()).arg(program);
                command
            }
            None => Command::new(program),
        };
        let log_file = std::fs::File::create(log)
            .map_err(BenchError::io(format!("creating {}", log.display())))?;
        let log_err = log_file
            .try_clone()
            .map_err(BenchError::io("duplicating a log handle"))?;
        command
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let child = command
            .spawn()
            .map_err(BenchError::io(format!("starting {}", program.display())))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// Process id of the measured program (`taskset` execs it, so the pid is the program's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for BenchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address with a port that was free a moment ago (the child binds it right after).
pub fn free_loopback_addr() -> Result<SocketAddr, BenchError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(BenchError::io("reserving a loopback port"))?;
    listener
        .local_addr()
        .map_err(BenchError::io("reading a reserved port"))
}

/// Waits until `addr` accepts TCP connections, or `timeout` passes.
pub async fn wait_for_listener(
    name: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::NotReady(name.to_owned(), timeout));
        }
        // Polling a child's port: there is no readiness signal to await across processes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
