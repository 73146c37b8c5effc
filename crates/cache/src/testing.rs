//! Test support (feature `test-support`): a throwaway `redis-server` on a free loopback port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `redis-server` process on a free loopback port, without persistence; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    /// Starts one and waits until it says it accepts connections.
    ///
    /// # Errors
    /// When `redis-server` is not installed (`.ci/run` installs Debian's) or exits before it
    /// is ready.
    pub fn start() -> Result<RedisServer, String> {
        // A free port is found by binding port 0 and letting it go; another process may take
        // it before redis-server binds it, and then redis-server exits: try another.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|error| format!("no free port: {error}"))?
                .port();
            match RedisServer::start_on(port) {
                Ok(server) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Starts it again on the same port, after [`stop`](RedisServer::stop) (to test
    /// what happens when Redis comes back).
    ///
    /// # Errors
    /// As for [`start`](RedisServer::start).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|tail| tail.trim_end_matches('/').parse::<u16>().ok())
            .ok_or("no port in the URL")?;
        *self = RedisServer::start_on(port)?;
        Ok(())
    }

    fn start_on(port: u16) -> Result<RedisServer, String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run redis-server (is it installed?): {error}"))?;
        let mut server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let stdout = server
            .child
            .stdout
            .take()
            .ok_or("no stdout from redis-server")?;
        let mut lines = BufReader::new(stdout).lines();
        // Its log says when it is ready; it ends (EOF) if the server exits instead.
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to accept connections") => break,
                Some(Ok(_)) => {}
                _ => {
                    server.stop();
                    return Err("redis-server exited before it was ready".to_owned());
                }
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(server)
    }

    /// Its URL, for `Backend::Redis`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills it now (to test a cache whose Redis died).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
