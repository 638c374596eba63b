//! Child processes of a test (the `certwatch` binary, `initdb`, ...), always
//! bounded in time: [`run`] runs a command to its end, and [`Child`] holds one
//! that runs beside the test; either kills the process and fails the test, naming
//! the command, when it outlives its deadline. [`Child::spawn_with_stderr_lines`]
//! reads a child's standard error line by line on a thread of its own. Runs on the
//! caller's thread (plus one reader thread per captured stream).

use std::io::{BufRead, Read};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `cmd` to its end with standard output and error captured (standard
/// input is what `cmd` says, else inherited); kills it and panics, naming the
/// command and what it printed, when it is still running after `deadline`.
pub fn run(cmd: &mut Command, deadline: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    Child::spawn(cmd).wait_with_output(deadline)
}

/// A child process of a test. Dropped while still running, it gets SIGTERM (so
/// that certwatch removes its private socket directory) and SIGKILL 5 s later:
/// a failing test leaves no process behind.
pub struct Child {
    child: std::process::Child,
    /// The command as a message names it: set variables, program and arguments.
    what: String,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `cmd`; panics, naming it, if it cannot start. Piped standard
    /// output and error are read by threads of their own, so a chatty child never
    /// blocks on a full pipe.
    pub fn spawn(cmd: &mut Command) -> Child {
        let what = describe(cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = child.stdout.take().map(read_all);
        let stderr = child.stderr.take().map(read_all);
        Child {
            child,
            what,
            stdout,
            stderr,
            status: None,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"TERM"`, `"HUP"`, ...) with kill(1); panics if it fails
    /// (the process is gone).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {} failed ({})", self.id(), self.what);
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.status = Some(status);
        }
    }

    /// The exit status if it has exited, without waiting. (Never panics: `Drop`
    /// calls it, also while a failing test unwinds.)
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `deadline` for the process to exit; its status, or `None`
    /// (the process still running) when the deadline passed.
    pub fn exit_within(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(10)));
        }
    }

    /// Waits at most `deadline` for the process to exit and returns its status;
    /// past it, kills the process and panics, naming the command and what it
    /// printed.
    pub fn wait(&mut self, deadline: Duration) -> ExitStatus {
        match self.exit_within(deadline) {
            Some(status) => status,
            None => {
                self.kill();
                let (stdout, stderr) = self.printed();
                panic!(
                    "{} was still running {deadline:?} after it was waited for: killed.\n\
                     stdout: {}\nstderr: {}",
                    self.what,
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
        }
    }

    /// SIGTERM, then [`Child::wait`] (kills and panics past `deadline`).
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        if self.try_status().is_none() {
            self.signal("TERM");
        }
        self.wait(deadline)
    }

    /// [`Child::wait`], then what the process printed on the streams that were
    /// piped and not taken over (empty otherwise).
    pub fn wait_with_output(mut self, deadline: Duration) -> Output {
        let status = self.wait(deadline);
        let (stdout, stderr) = self.printed();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Starts `cmd` with standard error piped and read line by line ([`Child::spawn`]
    /// otherwise): the child and its lines, as they come.
    pub fn spawn_with_stderr_lines(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
        let what = describe(cmd);
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let lines = lines_of(child.stderr.take().expect("stderr is piped"));
        let stdout = child.stdout.take().map(read_all);
        (
            Child {
                child,
                what,
                stdout,
                stderr: None,
                status: None,
            },
            lines,
        )
    }

    /// What the reader threads collected (the process has exited or was killed,
    /// so its ends of the pipes are closed).
    fn printed(&mut self) -> (Vec<u8>, Vec<u8>) {
        let join =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.id().to_string()])
                .stdin(Stdio::null())
                .status();
            if self.exit_within(Duration::from_secs(5)).is_none() {
                self.kill();
            }
        }
    }
}

/// `cmd` for a message: the variables it sets, its program and arguments.
fn describe(cmd: &Command) -> String {
    let mut out = String::from("`");
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            out.push_str(&format!("{}={:?} ", k.to_string_lossy(), v));
        }
    }
    out.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out.push('`');
    out
}

/// Reads `stream` to its end on a thread of its own.
fn read_all(mut stream: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        out
    })
}

/// Every line of `stream`, as it comes, from a thread that ends with the stream
/// (or when nobody listens any more).
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
