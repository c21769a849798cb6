//! A read-only HTTP/1.1 file server on loopback, for serving an archive laid out on disk to
//! apt in a check: GET and HEAD of regular files below one root, `404` for anything else.
//! apt asks for `Packages.xz` before `Packages`; a real 404 is what makes it fall back (its
//! `file:` method instead hands back the uncompressed file and fails the compressed hash).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// A request line or header longer than this is refused.
const MAX_LINE: usize = 8 * 1024;
/// At most this many header lines are read.
const MAX_HEADERS: usize = 100;

/// Serves `root` on 127.0.0.1 until dropped.
pub struct FileServer {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn start(root: &Path) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
        let address = format!("http://{}", listener.local_addr()?);
        let stop = Arc::new(AtomicBool::new(false));
        let (root, stopping) = (root.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    // One broken client must not stop the archive.
                    let _ = serve(stream, &root);
                }
            }
        });
        Ok(Self {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.address
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.address.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, root: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let request = read_line(&mut reader)?;
    for _ in 0..MAX_HEADERS {
        if read_line(&mut reader)?.is_empty() {
            break;
        }
    }
    let mut writer = stream;
    let mut parts = request.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let file = match (method, resolve(root, target)) {
        ("GET" | "HEAD", Some(path)) => File::open(path).ok(),
        _ => None,
    };
    match file {
        Some(mut file) => {
            let length = file.metadata()?.len();
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            )?;
            if method == "GET" {
                io::copy(&mut file, &mut writer)?;
            }
        }
        None => write!(
            writer,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    writer.flush()?;
    writer.shutdown(Shutdown::Both)
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request line too long or cut",
        ));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// The regular file `target` (a request path, percent-escaped) names below `root`, never
/// outside it and never through a link.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let decoded = pew_image::archive::percent_decode(target.split('?').next()?);
    let relative = Path::new(decoded.strip_prefix('/')?);
    if !relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
    {
        return None;
    }
    let mut path = root.to_owned();
    for component in relative.components() {
        path.push(component);
        if path.symlink_metadata().ok()?.file_type().is_symlink() {
            return None;
        }
    }
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn get(server: &FileServer, path: &str) -> String {
        let mut stream = TcpStream::connect(server.url().trim_start_matches("http://")).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn files_below_the_root_are_served_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("pool/main/b")).unwrap();
        std::fs::write(root.join("pool/main/b/bsdutils_1:2.41_arm64.deb"), b"deb").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let server = FileServer::start(&root).unwrap();

        let answer = get(&server, "/pool/main/b/bsdutils_1%3a2.41_arm64.deb");
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with("\r\n\r\ndeb"));
        for refused in [
            "/../secret",
            "/link",
            "/pool/main",
            "/missing",
            "pool/main/b",
        ] {
            let answer = get(&server, refused);
            assert!(answer.starts_with("HTTP/1.1 404"), "{refused}: {answer}");
        }
    }
}
