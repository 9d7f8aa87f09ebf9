//! A `psql` session kept open, for tests that hold a transaction while
//! Inlet works beside it.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// What the session prints after each batch, to tell it has run.
const DONE: &str = "inlet-session-done";

/// One connection, its statements sent one batch at a time; killed on drop
/// (an open transaction is then rolled back).
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    /// Connects to the database at `url` (without a password).
    pub fn open(url: &str) -> io::Result<Self> {
        let mut child = Command::new(super::bin("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Self { child, stdin, stdout })
    }

    /// Runs `sql` and returns once it has run; an error (which ends the
    /// session) as the error.
    pub fn run(&mut self, sql: &str) -> io::Result<()> {
        writeln!(self.stdin, "{sql}\n\\echo {DONE}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                return Err(io::Error::other(format!("psql ended running {sql:?}")));
            }
            if line.trim_end() == DONE {
                return Ok(());
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
