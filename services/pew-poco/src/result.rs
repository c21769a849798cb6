//! The task's result as the PoCo sees it (§2.2, §3.5): the app's `computed.json`, the result
//! digest a worker contributes, the error result written when a task fails before computing,
//! and the post-compute file name check.
//!
//! Host layout: `<task>/output/iexec_out` is the container's `/iexec_out`, so a container
//! path from `computed.json` is appended to `<task>/output`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::challenge::java_hex_bytes;

/// The file every app writes in `/iexec_out` (and the worker copies to `output/`).
pub const COMPUTED_JSON: &str = "computed.json";
/// The file the worker writes in `iexec_out` when the task failed before or during compute.
pub const ERROR_FILE: &str = "error.txt";
/// Longest result file name the Java worker accepts (`PostComputeService`).
pub const MAX_RESULT_FILE_NAME_LEN: usize = 31;

/// Why a result digest could not be computed or the result is refused.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// A result file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// `computed.json` is not a JSON object of strings.
    #[error("computed.json is not valid: {0}")]
    InvalidComputedFile(#[source] serde_json::Error),
    /// Without it there is nothing to hash (the app did not follow the iExec contract).
    #[error("computed.json has no deterministic-output-path")]
    MissingDeterministicOutputPath,
    /// A `..` would let the app point the worker at host files outside the task.
    #[error("deterministic-output-path {0:?} contains \"..\"")]
    UnsafeDeterministicOutputPath(String),
    /// A callback deal's digest is that of the callback data.
    #[error("computed.json has no callback-data but the deal has a callback")]
    MissingCallbackData,
    /// FIFOs, sockets and devices could block the worker or never end.
    #[error("{} is neither a regular file nor a directory", path.display())]
    NotRegularFile { path: PathBuf },
    /// Post-compute refuses such results (`POST_COMPUTE_TOO_LONG_RESULT_FILE_NAME`).
    #[error("result file name longer than {MAX_RESULT_FILE_NAME_LEN} characters: {}", path.display())]
    FileNameTooLong { path: PathBuf },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ResultError + '_ {
    move |source| ResultError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `computed.json` (iexec-common `ComputedFile`): kebab-case keys, unknown keys ignored,
/// absent keys `None`. Only the TEE flow fills the last four fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComputedFile {
    /// Container path of the file or directory the digest covers, e.g. `/iexec_out/result.txt`.
    pub deterministic_output_path: Option<String>,
    /// Hex bytes handed to the deal's callback contract.
    pub callback_data: Option<String>,
    pub task_id: Option<String>,
    pub result_digest: Option<String>,
    pub enclave_signature: Option<String>,
    pub error_message: Option<String>,
}

impl ComputedFile {
    /// Parses the JSON an app wrote.
    pub fn parse(json: &str) -> Result<Self, ResultError> {
        serde_json::from_str(json).map_err(ResultError::InvalidComputedFile)
    }

    /// Reads and parses a `computed.json` file.
    pub fn read(path: &Path) -> Result<Self, ResultError> {
        Self::parse(&fs::read_to_string(path).map_err(io_error(path))?)
    }

    /// Jackson's compact form, every key present and `null` when unset, as the Java worker
    /// writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of optional strings always serializes")
    }
}

/// SHA-256 of a file's bytes, streamed so a large result does not have to fit in RAM.
fn file_sha256(path: &Path) -> Result<B256, ResultError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_error(path))?;
    Ok(B256::from(<[u8; 32]>::from(hasher.finalize())))
}

/// `FileHashUtils.getFileTreeSha256`: a regular file gives its SHA-256; a directory gives
/// `keccak(sha256(e1) ‖ sha256(e2) ‖ …)` over its top-level entries sorted by name, where
/// sub-directories and dangling symlinks contribute no bytes (upstream hashes them as an
/// empty string). Symlinks are followed, as Java does.
///
/// Unlike upstream, which would block or hash garbage, a FIFO, socket or device is an error,
/// and so is an entry that exists but cannot be read.
pub fn file_tree_sha256(path: &Path) -> Result<B256, ResultError> {
    let metadata = fs::metadata(path).map_err(io_error(path))?;
    if !metadata.is_dir() {
        return regular_file_sha256(path, &metadata);
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(path).map_err(io_error(path))? {
        entries.push(entry.map_err(io_error(path))?.path());
    }
    // Java sorts `File`s by path string, i.e. by UTF-16 code units.
    entries.sort_by_cached_key(|entry| {
        entry
            .as_os_str()
            .to_string_lossy()
            .encode_utf16()
            .collect::<Vec<u16>>()
    });

    let mut concatenated = Vec::with_capacity(32 * entries.len());
    for entry in &entries {
        let metadata = match fs::metadata(entry) {
            Ok(metadata) => metadata,
            // Java's `exists()` is false for a symlink whose target is missing or unreachable.
            Err(_) if entry.is_symlink() => continue,
            Err(source) => {
                return Err(ResultError::Io {
                    path: entry.clone(),
                    source,
                });
            }
        };
        if metadata.is_dir() {
            continue;
        }
        concatenated.extend_from_slice(regular_file_sha256(entry, &metadata)?.as_slice());
    }
    Ok(keccak256(concatenated))
}

fn regular_file_sha256(path: &Path, metadata: &fs::Metadata) -> Result<B256, ResultError> {
    if !metadata.is_file() {
        return Err(ResultError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    file_sha256(path)
}

/// The digest a worker contributes (`ResultService.computeResultDigest`).
///
/// With a callback deal it is `keccak(callback-data bytes)` (hex read the web3j way), which
/// PoCo `finalize` checks against the callback payload. Otherwise it is
/// [`file_tree_sha256`] of `task_output_dir` + `deterministic-output-path`, joined as strings
/// as upstream does.
pub fn result_digest(
    task_output_dir: &Path,
    computed: &ComputedFile,
    has_callback: bool,
) -> Result<B256, ResultError> {
    if has_callback {
        return match computed.callback_data.as_deref() {
            Some(data) if !data.is_empty() => Ok(keccak256(java_hex_bytes(data))),
            _ => Err(ResultError::MissingCallbackData),
        };
    }
    let container_path = match computed.deterministic_output_path.as_deref() {
        Some(path) if !path.is_empty() => path,
        _ => return Err(ResultError::MissingDeterministicOutputPath),
    };
    if Path::new(container_path)
        .components()
        .any(|part| part == std::path::Component::ParentDir)
    {
        return Err(ResultError::UnsafeDeterministicOutputPath(
            container_path.to_owned(),
        ));
    }
    let mut host_path = OsString::from(task_output_dir);
    host_path.push(container_path);
    file_tree_sha256(Path::new(&host_path))
}

/// The text of `error.txt` (`ResultService.writeErrorToIexecOut`) for one cause with an empty
/// message: Java formats the `List<WorkflowError>` with the record's `toString`.
pub fn error_text(status: &str, cause: &str) -> String {
    format!(
        "[IEXEC] Errors occurred while computing the task [error:{status}, causes:[WorkflowError[cause={cause}, message=]]]"
    )
}

/// Writes the error result a worker contributes when the task failed before producing one:
/// `error.txt` with [`error_text`] and a `computed.json` pointing at it, byte-identical to the
/// Java worker's so their digests reach consensus. Creates `iexec_out` if needed.
pub fn write_error_result(iexec_out: &Path, status: &str, cause: &str) -> io::Result<()> {
    fs::create_dir_all(iexec_out)?;
    fs::write(iexec_out.join(ERROR_FILE), error_text(status, cause))?;
    let computed = ComputedFile {
        deterministic_output_path: Some(format!("/iexec_out/{ERROR_FILE}")),
        ..ComputedFile::default()
    };
    fs::write(iexec_out.join(COMPUTED_JSON), computed.to_json())
}

/// Post-compute's first check (`PostComputeService.checkResultFilesName`): no file anywhere
/// under `iexec_out` may have a name longer than 31 UTF-16 units. Directory names are not
/// checked, and symlinks are not followed, as with Java's `walkFileTree`.
pub fn check_result_file_names(iexec_out: &Path) -> Result<(), ResultError> {
    // An explicit stack: an app can nest directories deeper than the worker's call stack.
    let mut directories = vec![iexec_out.to_owned()];
    while let Some(directory) = directories.pop() {
        for entry in fs::read_dir(&directory).map_err(io_error(&directory))? {
            let entry = entry.map_err(io_error(&directory))?;
            let path = entry.path();
            if entry.file_type().map_err(io_error(&path))?.is_dir() {
                directories.push(path);
            } else if entry.file_name().to_string_lossy().encode_utf16().count()
                > MAX_RESULT_FILE_NAME_LEN
            {
                return Err(ResultError::FileNameTooLong { path });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256;
    use crate::test_support::b256;

    const RESULT1: &str = "A result";
    const RESULT2: &str = "Another result";

    /// A task directory with `output/iexec_out` holding `files`.
    fn task_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let task = tempfile::tempdir().unwrap();
        let iexec_out = task.path().join("output/iexec_out");
        fs::create_dir_all(&iexec_out).unwrap();
        for (name, content) in files {
            let path = iexec_out.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        task
    }

    fn output(task: &tempfile::TempDir) -> PathBuf {
        task.path().join("output")
    }

    fn digest_of(task: &tempfile::TempDir) -> Result<B256, ResultError> {
        let computed = ComputedFile::read(&output(task).join("iexec_out").join(COMPUTED_JSON))?;
        result_digest(&output(task), &computed, false)
    }

    #[test]
    fn file_hash_utils_vectors() {
        let task = task_with(&[("result1.txt", RESULT1), ("result2.txt", RESULT2)]);
        let iexec_out = output(&task).join("iexec_out");
        let r1 = b256("0xd885f429a59e0816822fc0927be6a6af20ade2c79db49df6c6022f79cb27ac16");
        let r2 = b256("0xc7fc6fe4f271bcb3f7b1036f2e6dfeeb9023e9c5c144cc774583dc8fd53074fe");
        assert_eq!(
            file_tree_sha256(&iexec_out.join("result1.txt")).unwrap(),
            r1
        );
        assert_eq!(
            file_tree_sha256(&iexec_out.join("result2.txt")).unwrap(),
            r2
        );
        let tree = b256("0xcc77508549295dd5de5876a2f4f00d4c3c27a547c6403450e43ab4de191bf1bc");
        assert_eq!(file_tree_sha256(&iexec_out).unwrap(), tree);
        assert_eq!(tree, keccak256([r1.as_slice(), r2.as_slice()].concat()));
        let computed = ComputedFile {
            deterministic_output_path: Some("/iexec_out".into()),
            ..Default::default()
        };
        assert_eq!(
            result_digest(&output(&task), &computed, false).unwrap(),
            tree
        );
    }

    #[test]
    fn result_service_deterministic_output_file() {
        let task = task_with(&[
            (
                COMPUTED_JSON,
                r#"{"deterministic-output-path":"/iexec_out/computing-trace.txt"}"#,
            ),
            (
                "computing-trace.txt",
                "Detected face in image1.jpg\nDetected face in image4.jpg\nDetected face in image5.jpg\nEnd compute",
            ),
        ]);
        assert_eq!(
            digest_of(&task).unwrap(),
            b256("0x09b727883db89fa3b3504f83e0c67d04a0d4fc35a9670cc4517c49d2a27ad171")
        );
    }

    #[test]
    fn result_service_deterministic_output_directory_includes_computed_json() {
        let task = task_with(&[
            (
                COMPUTED_JSON,
                "{\n  \"deterministic-output-path\": \"/iexec_out\"\n}",
            ),
            ("result1.txt", RESULT1),
            ("result2.txt", RESULT2),
        ]);
        assert_eq!(
            digest_of(&task).unwrap(),
            b256("0xc6114778cc5c33db5fbbd4d0f9be116ed0232961045341714aba5a72d3ef7402")
        );
    }

    #[test]
    fn result_service_callback_digest() {
        let task = task_with(&[(
            COMPUTED_JSON,
            r#"{"callback-data":"0x0000000000000000000000000000000000000000000000000000000000000001"}"#,
        )]);
        let computed =
            ComputedFile::read(&output(&task).join("iexec_out").join(COMPUTED_JSON)).unwrap();
        let expected = b256("0xb10e2d527612073b26eecdfd717e6a320cf44b4afac2b0732d9fcbe2b7fa0cf6");
        assert_eq!(
            result_digest(&output(&task), &computed, true).unwrap(),
            expected
        );
        // Without a callback the same file has no deterministic output.
        assert!(matches!(
            result_digest(&output(&task), &computed, false),
            Err(ResultError::MissingDeterministicOutputPath)
        ));
    }

    #[test]
    fn callback_deal_needs_non_empty_callback_data() {
        let dir = Path::new("/nonexistent");
        let empty = ComputedFile {
            callback_data: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(
            result_digest(dir, &empty, true),
            Err(ResultError::MissingCallbackData)
        ));
        assert!(matches!(
            result_digest(dir, &ComputedFile::default(), true),
            Err(ResultError::MissingCallbackData)
        ));
    }

    #[test]
    fn error_results_are_byte_exact_and_give_the_derived_digests() {
        for (status, cause, digest) in [
            (
                "APP_DOWNLOAD_FAILED",
                "APP_IMAGE_DOWNLOAD_FAILED",
                "0x6b234cc858ad3404f912dd7f119afe2178251bec64cb25e5cbeba61dd764fc5d",
            ),
            (
                "DATA_DOWNLOAD_FAILED",
                "DATASET_FILE_DOWNLOAD_FAILED",
                "0x8e3ac3704dc9fd9bdec06799b85a570e7f67f3ff8cd751b11af241dddbe4996e",
            ),
        ] {
            let task = tempfile::tempdir().unwrap();
            let iexec_out = task.path().join("output/iexec_out");
            write_error_result(&iexec_out, status, cause).unwrap();
            assert_eq!(
                fs::read_to_string(iexec_out.join(ERROR_FILE)).unwrap(),
                format!(
                    "[IEXEC] Errors occurred while computing the task [error:{status}, causes:[WorkflowError[cause={cause}, message=]]]"
                )
            );
            assert_eq!(
                fs::read_to_string(iexec_out.join(COMPUTED_JSON)).unwrap(),
                r#"{"deterministic-output-path":"/iexec_out/error.txt","callback-data":null,"task-id":null,"result-digest":null,"enclave-signature":null,"error-message":null}"#
            );
            let computed = ComputedFile::read(&iexec_out.join(COMPUTED_JSON)).unwrap();
            assert_eq!(
                result_digest(&task.path().join("output"), &computed, false).unwrap(),
                b256(digest)
            );
        }
    }

    #[test]
    fn computed_file_json_matches_upstream_models() {
        assert_eq!(
            ComputedFile::default().to_json(),
            r#"{"deterministic-output-path":null,"callback-data":null,"task-id":null,"result-digest":null,"enclave-signature":null,"error-message":null}"#
        );
        let parsed = ComputedFile::parse(
            r#"{"deterministic-output-path":"/iexec_out/r.txt","callback-data":"0x01","future-key":{"a":1},"task-id":null}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.deterministic_output_path.as_deref(),
            Some("/iexec_out/r.txt")
        );
        assert_eq!(parsed.callback_data.as_deref(), Some("0x01"));
        assert_eq!(parsed.task_id, None);
        assert!(matches!(
            ComputedFile::parse("[]"),
            Err(ResultError::InvalidComputedFile(_))
        ));
    }

    #[test]
    fn subdirectories_contribute_nothing_and_order_is_by_name() {
        let task = task_with(&[
            ("b", "2"),
            ("a.txt", "1"),
            ("B", "3"),
            ("sub/deep.txt", "ignored"),
            (".hidden", "4"),
        ]);
        let iexec_out = output(&task).join("iexec_out");
        // ".hidden" < "B" < "a.txt" < "b" in code-unit order; "sub" is skipped.
        let expected = [sha256(b"4"), sha256(b"3"), sha256(b"1"), sha256(b"2")].concat();
        assert_eq!(file_tree_sha256(&iexec_out).unwrap(), keccak256(expected));
    }

    #[test]
    fn empty_directory_hashes_to_keccak_of_nothing() {
        let task = task_with(&[]);
        assert_eq!(
            file_tree_sha256(&output(&task).join("iexec_out")).unwrap(),
            keccak256([])
        );
    }

    #[test]
    fn dangling_symlinks_contribute_nothing_and_valid_ones_are_followed() {
        let task = task_with(&[("real.txt", RESULT1)]);
        let iexec_out = output(&task).join("iexec_out");
        std::os::unix::fs::symlink("missing", iexec_out.join("dangling")).unwrap();
        std::os::unix::fs::symlink("real.txt", iexec_out.join("zlink")).unwrap();
        let r1 = sha256(RESULT1.as_bytes());
        assert_eq!(
            file_tree_sha256(&iexec_out).unwrap(),
            keccak256([r1.as_slice(), r1.as_slice()].concat())
        );
    }

    #[test]
    fn special_files_are_refused_instead_of_read() {
        let task = task_with(&[("ok.txt", "x")]);
        let iexec_out = output(&task).join("iexec_out");
        let socket = iexec_out.join("trap");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert!(
            matches!(file_tree_sha256(&iexec_out), Err(ResultError::NotRegularFile { path }) if path == socket)
        );
        assert!(matches!(
            file_tree_sha256(&socket),
            Err(ResultError::NotRegularFile { .. })
        ));
    }

    #[test]
    fn missing_or_unsafe_deterministic_paths_fail() {
        let task = task_with(&[("result.txt", RESULT1)]);
        let missing = ComputedFile {
            deterministic_output_path: Some("/iexec_out/nope.txt".into()),
            ..Default::default()
        };
        assert!(matches!(
            result_digest(&output(&task), &missing, false),
            Err(ResultError::Io { .. })
        ));
        let empty = ComputedFile {
            deterministic_output_path: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(
            result_digest(&output(&task), &empty, false),
            Err(ResultError::MissingDeterministicOutputPath)
        ));
        let escape = ComputedFile {
            deterministic_output_path: Some("/iexec_out/../../../etc/hostname".into()),
            ..Default::default()
        };
        assert!(matches!(
            result_digest(&output(&task), &escape, false),
            Err(ResultError::UnsafeDeterministicOutputPath(_))
        ));
    }

    #[test]
    fn result_file_names_up_to_31_characters_pass() {
        let ok = "a".repeat(MAX_RESULT_FILE_NAME_LEN);
        let long_directory = format!("{}/short.txt", "d".repeat(40));
        let task = task_with(&[(ok.as_str(), "x"), (long_directory.as_str(), "y")]);
        check_result_file_names(&output(&task).join("iexec_out")).unwrap();
    }

    #[test]
    fn a_32_character_name_deep_in_a_subdirectory_fails() {
        let nested = format!("a/b/c/{}", "n".repeat(MAX_RESULT_FILE_NAME_LEN + 1));
        let task = task_with(&[("ok.txt", "x"), (nested.as_str(), "y")]);
        let error = check_result_file_names(&output(&task).join("iexec_out")).unwrap_err();
        assert!(
            matches!(&error, ResultError::FileNameTooLong { path } if path.ends_with(&nested)),
            "{error}"
        );
    }

    #[test]
    fn file_name_length_counts_utf16_units_like_java() {
        // 31 two-byte UTF-8 characters are 31 UTF-16 units: accepted.
        let accented = "é".repeat(MAX_RESULT_FILE_NAME_LEN);
        let task = task_with(&[(accented.as_str(), "x")]);
        check_result_file_names(&output(&task).join("iexec_out")).unwrap();
        // 16 astral characters are 32 UTF-16 units: refused.
        let astral = "😀".repeat(16);
        let task = task_with(&[(astral.as_str(), "x")]);
        assert!(check_result_file_names(&output(&task).join("iexec_out")).is_err());
    }

    #[test]
    fn missing_iexec_out_is_an_io_error() {
        let task = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_result_file_names(&task.path().join("iexec_out")),
            Err(ResultError::Io { .. })
        ));
    }
}
