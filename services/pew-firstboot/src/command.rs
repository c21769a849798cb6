//! The programs first boot runs (mount, sfdisk, resize2fs, sha256sum, …), behind one trait so
//! that everything deciding *what* to run is tested without running anything.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

/// One program run: what a test asserts and what [`SystemRunner`] executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: &'static str,
    pub args: Vec<OsString>,
    /// Written to the program's standard input, which is closed afterwards.
    pub stdin: Option<String>,
}

impl Invocation {
    pub fn new<I, A>(program: &'static str, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        Self {
            program,
            args: args
                .into_iter()
                .map(|arg| arg.as_ref().to_owned())
                .collect(),
            stdin: None,
        }
    }

    pub fn with_stdin(self, input: impl Into<String>) -> Self {
        Self {
            stdin: Some(input.into()),
            ..self
        }
    }
}

impl fmt::Display for Invocation {
    /// The command line as a person would type it (for logs and errors).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program)?;
        self.args
            .iter()
            .try_for_each(|arg| write!(f, " {}", arg.to_string_lossy()))
    }
}

/// Why a program did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run `{invocation}`: {source}")]
    Spawn {
        invocation: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{invocation}` failed ({status}): {stderr}")]
    Failed {
        invocation: String,
        status: String,
        stderr: String,
    },
    #[error("`{invocation}` printed something that is not UTF-8")]
    NotUtf8 { invocation: String },
}

/// Runs programs.
pub trait Runner {
    /// Runs `invocation` to completion and returns its standard output; a non-zero exit is an
    /// error carrying the standard error.
    fn run(&self, invocation: &Invocation) -> Result<String, CommandError>;
}

/// Runs programs on this system, found through `PATH`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, invocation: &Invocation) -> Result<String, CommandError> {
        let spawn_error = |source| CommandError::Spawn {
            invocation: invocation.to_string(),
            source,
        };
        let mut child = Command::new(invocation.program)
            .args(&invocation.args)
            .stdin(if invocation.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(input), Some(mut pipe)) = (&invocation.stdin, child.stdin.take()) {
            // Inputs are a line or two (sfdisk), far below the pipe's buffer, so writing all
            // of it before reading the output cannot deadlock. Dropping the pipe at the end of
            // this block closes it: the program sees the end of its input.
            pipe.write_all(input.as_bytes()).map_err(spawn_error)?;
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if !output.status.success() {
            return Err(CommandError::Failed {
                invocation: invocation.to_string(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        String::from_utf8(output.stdout).map_err(|_| CommandError::NotUtf8 {
            invocation: invocation.to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;

    use super::*;

    /// Records every invocation and answers with `respond`, so a test can both script the
    /// system's answers and check what was asked of it.
    pub struct RecordingRunner<F> {
        respond: F,
        pub log: RefCell<Vec<Invocation>>,
    }

    impl<F: Fn(&Invocation) -> Result<String, CommandError>> RecordingRunner<F> {
        pub fn new(respond: F) -> Self {
            Self {
                respond,
                log: RefCell::new(Vec::new()),
            }
        }

        /// Every command line run so far, as typed.
        pub fn command_lines(&self) -> Vec<String> {
            self.log.borrow().iter().map(ToString::to_string).collect()
        }
    }

    impl<F: Fn(&Invocation) -> Result<String, CommandError>> Runner for RecordingRunner<F> {
        fn run(&self, invocation: &Invocation) -> Result<String, CommandError> {
            self.log.borrow_mut().push(invocation.clone());
            (self.respond)(invocation)
        }
    }

    /// A runner for steps whose programs all succeed silently.
    pub fn silent() -> RecordingRunner<impl Fn(&Invocation) -> Result<String, CommandError>> {
        RecordingRunner::new(|_| Ok(String::new()))
    }

    pub fn failure(invocation: &Invocation, stderr: &str) -> CommandError {
        CommandError::Failed {
            invocation: invocation.to_string(),
            status: "exit status: 1".to_owned(),
            stderr: stderr.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_program_with_input_and_returns_its_output() {
        let output = SystemRunner
            .run(&Invocation::new("tr", ["a-z", "A-Z"]).with_stdin("start=8192\n"))
            .unwrap();
        assert_eq!(output, "START=8192\n");
    }

    #[test]
    fn a_failing_program_reports_its_command_line_and_standard_error() {
        let error = SystemRunner
            .run(&Invocation::new("ls", ["/nonexistent-pew-path"]))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("`ls /nonexistent-pew-path` failed (exit status: 2)"),
            "{message}"
        );
        assert!(message.contains("No such file"), "{message}");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let error = SystemRunner
            .run(&Invocation::new("pew-no-such-program", ["x"]))
            .unwrap_err();
        assert!(matches!(error, CommandError::Spawn { .. }), "{error}");
    }
}
