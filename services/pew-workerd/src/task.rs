//! One task's description (read from the chain), its files on the data partition, and the
//! stages around the container: inputs, environment, standard post-compute.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pew_chain::Chain;
use pew_iexec::status::{ReplicateStatus, StatusCause};
use pew_poco::abi::DealParams;
use pew_poco::{Address, B256};
use sha2::{Digest, Sha256};

/// IPFS gateways tried in order for `/ipfs/…` dataset addresses (§3.3).
const IPFS_GATEWAYS: [&str; 3] = [
    "https://ipfs-gateway.v8-bellecour.iex.ec",
    "https://gateway.ipfs.io",
    "https://gateway.pinata.cloud",
];

/// A task as the worker needs it, from the hub's views of the task, deal, category, app and
/// dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDescription {
    pub chain_task_id: B256,
    pub deal_id: B256,
    pub index: u64,
    pub app_uri: String,
    pub max_execution_time: Duration,
    pub callback: Option<Address>,
    pub params: DealParams,
    pub dataset: Option<Dataset>,
    pub bot_first: u64,
    pub bot_size: u64,
    /// Seconds since the Unix epoch.
    pub contribution_deadline: u64,
    pub final_deadline: u64,
    /// TEE tags (low bit of the tag) are not supported by this worker.
    pub is_tee: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub address: Address,
    pub uri: String,
    /// Zero when the dataset's owner published none.
    pub checksum: B256,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("cannot read task {task} from the chain: {source}")]
    Chain {
        task: B256,
        #[source]
        source: pew_chain::ChainError,
    },
    #[error("task {0} is not initialized on-chain")]
    NotInitialized(B256),
}

impl TaskDescription {
    pub async fn read(chain: &Chain, task: B256) -> Result<Self, TaskError> {
        let from_chain = |source| TaskError::Chain { task, source };
        let chain_task = chain.task(task).await.map_err(from_chain)?;
        if chain_task.deal_id == B256::ZERO {
            return Err(TaskError::NotInitialized(task));
        }
        let deal = chain.deal(chain_task.deal_id).await.map_err(from_chain)?;
        let category = chain.category(deal.category).await.map_err(from_chain)?;
        let app = chain.app(deal.app.pointer).await.map_err(from_chain)?;
        let dataset = if !deal.has_dataset() {
            None
        } else {
            let dataset = chain
                .dataset(deal.dataset.pointer)
                .await
                .map_err(from_chain)?;
            Some(Dataset {
                address: deal.dataset.pointer,
                uri: dataset.multiaddr,
                checksum: dataset.checksum,
            })
        };
        Ok(Self {
            chain_task_id: task,
            deal_id: chain_task.deal_id,
            index: chain_task.index,
            app_uri: app.multiaddr,
            max_execution_time: category.max_execution_time(),
            callback: deal.has_callback().then_some(deal.callback),
            params: DealParams::parse(&deal.params),
            dataset,
            bot_first: deal.bot_first,
            bot_size: deal.bot_size,
            contribution_deadline: chain_task.contribution_deadline,
            final_deadline: chain_task.final_deadline,
            is_tee: deal.is_tee(),
        })
    }

    /// The environment of a standard app (`IexecEnvUtils.getComputeStageEnvMap`, §3.4).
    pub fn compute_env(&self) -> Vec<(String, String)> {
        let dataset = self
            .dataset
            .as_ref()
            .map_or(Address::ZERO, |dataset| dataset.address);
        let dataset = format!("{dataset:#x}");
        let inputs = &self.params.iexec_input_files;
        let mut env = vec![
            ("IEXEC_DEAL_ID".to_owned(), format!("{:#x}", self.deal_id)),
            ("IEXEC_TASK_INDEX".to_owned(), self.index.to_string()),
            (
                "IEXEC_TASK_ID".to_owned(),
                format!("{:#x}", self.chain_task_id),
            ),
            ("IEXEC_IN".to_owned(), CONTAINER_IN.to_owned()),
            ("IEXEC_OUT".to_owned(), CONTAINER_OUT.to_owned()),
            ("IEXEC_BOT_SIZE".to_owned(), self.bot_size.to_string()),
            (
                "IEXEC_BOT_FIRST_INDEX".to_owned(),
                self.bot_first.to_string(),
            ),
            ("IEXEC_BOT_TASK_INDEX".to_owned(), self.index.to_string()),
            ("IEXEC_DATASET_ADDRESS".to_owned(), dataset.clone()),
            ("IEXEC_DATASET_FILENAME".to_owned(), dataset),
            (
                "IEXEC_INPUT_FILES_NUMBER".to_owned(),
                inputs.len().to_string(),
            ),
        ];
        if !inputs.is_empty() {
            env.push((
                "IEXEC_INPUT_FILES_FOLDER".to_owned(),
                CONTAINER_IN.to_owned(),
            ));
            for (number, url) in inputs.iter().enumerate() {
                env.push((
                    format!("IEXEC_INPUT_FILE_NAME_{}", number + 1),
                    input_file_name(url),
                ));
            }
        }
        env
    }
}

pub const CONTAINER_IN: &str = "/iexec_in";
pub const CONTAINER_OUT: &str = "/iexec_out";

/// The name an input file is saved under: `0x` + sha256 of its URL string (§3.3).
pub fn input_file_name(url: &str) -> String {
    format!("0x{}", hex::encode(Sha256::digest(url.as_bytes())))
}

/// Where one task's files live: `<data>/tasks/<task id>/{input, output/iexec_out, …}`.
#[derive(Debug, Clone)]
pub struct TaskFiles {
    root: PathBuf,
}

impl TaskFiles {
    pub fn new(tasks_dir: &Path, chain_task_id: B256) -> Self {
        Self {
            root: tasks_dir.join(format!("{chain_task_id:#x}")),
        }
    }

    pub fn input(&self) -> PathBuf {
        self.root.join("input")
    }
    /// The host side of `/iexec_out`'s parent: `deterministic-output-path` is resolved here.
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }
    pub fn iexec_out(&self) -> PathBuf {
        self.output().join("iexec_out")
    }
    pub fn zip(&self) -> PathBuf {
        self.output().join("iexec_out.zip")
    }
    pub fn computed_json(&self) -> PathBuf {
        self.output().join("computed.json")
    }

    /// Fresh, empty input and output directories (a retried compute must not see old files).
    /// `app_user` (uid, gid) gets the output folder, so the app can write there and nowhere
    /// else; it is applied only when the worker runs as root (who else could give it away).
    pub fn prepare(&self, app_user: (u32, u32)) -> io::Result<()> {
        for dir in [self.input(), self.output()] {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::create_dir_all(self.input())?;
        fs::create_dir_all(self.iexec_out())?;
        if running_as_root() {
            std::os::unix::fs::chown(self.iexec_out(), Some(app_user.0), Some(app_user.1))?;
        }
        Ok(())
    }

    /// The result survives restarts: recovery contributes, reveals or uploads it later.
    pub fn result_available(&self) -> bool {
        self.zip().is_file() && self.computed_json().is_file()
    }

    pub fn purge(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A stage that failed, as reported to the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct StageFailure {
    pub status: ReplicateStatus,
    pub cause: StatusCause,
    pub message: String,
}

/// Downloads the dataset (checksum checked) and the input files into the task's input folder.
pub async fn download_data(
    http: &reqwest::Client,
    task: &TaskDescription,
    files: &TaskFiles,
) -> Result<(), StageFailure> {
    let failure = |cause, message: String| StageFailure {
        status: ReplicateStatus::DataDownloadFailed,
        cause,
        message,
    };
    if let Some(dataset) = &task.dataset {
        let urls: Vec<String> = match dataset.uri.strip_prefix("/ipfs/") {
            Some(_) => IPFS_GATEWAYS
                .iter()
                .map(|gateway| format!("{gateway}{}", dataset.uri))
                .collect(),
            None => vec![dataset.uri.clone()],
        };
        let mut bytes = None;
        let mut errors = Vec::new();
        for url in &urls {
            match fetch(http, url).await {
                Ok(body) => {
                    bytes = Some(body);
                    break;
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        let bytes = bytes
            .ok_or_else(|| failure(StatusCause::DatasetFileDownloadFailed, errors.join("; ")))?;
        if dataset.checksum != B256::ZERO {
            let actual = B256::from_slice(&Sha256::digest(&bytes));
            if actual != dataset.checksum {
                return Err(failure(
                    StatusCause::DatasetFileBadChecksum,
                    format!(
                        "dataset {} has sha256 {actual:#x}, the chain says {:#x}",
                        dataset.uri, dataset.checksum
                    ),
                ));
            }
        } else {
            tracing::warn!(dataset = %dataset.uri, "the dataset has no on-chain checksum");
        }
        write_file(
            &files.input().join(format!("{:#x}", dataset.address)),
            &bytes,
        )
        .map_err(|e| failure(StatusCause::DatasetFileDownloadFailed, e.to_string()))?;
    }
    for url in &task.params.iexec_input_files {
        let bytes = fetch(http, url)
            .await
            .map_err(|e| failure(StatusCause::InputFilesDownloadFailed, format!("{url}: {e}")))?;
        write_file(&files.input().join(input_file_name(url)), &bytes)
            .map_err(|e| failure(StatusCause::InputFilesDownloadFailed, e.to_string()))?;
    }
    Ok(())
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, reqwest::Error> {
    let response = http.get(url).send().await?.error_for_status()?;
    Ok(response.bytes().await?.to_vec())
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The standard post-compute (§3.5): result names checked, `iexec_out` zipped, `computed.json`
/// copied beside it, the result digest computed. Failures carry the cause the Java worker logs.
pub fn post_compute(files: &TaskFiles, has_callback: bool) -> Result<B256, StageFailure> {
    let failure = |cause, message: String| StageFailure {
        status: ReplicateStatus::Computed,
        cause,
        message,
    };
    pew_poco::result::check_result_file_names(&files.iexec_out())
        .map_err(|e| failure(StatusCause::PostComputeTooLongResultFileName, e.to_string()))?;
    zip_directory(&files.iexec_out(), &files.zip())
        .map_err(|e| failure(StatusCause::PostComputeOutFolderZipFailed, e.to_string()))?;
    let computed = files.iexec_out().join("computed.json");
    let text = fs::read_to_string(&computed).map_err(|e| {
        failure(
            StatusCause::PostComputeComputedFileNotFound,
            format!("{}: {e}", computed.display()),
        )
    })?;
    write_file(&files.computed_json(), text.as_bytes()).map_err(|e| {
        failure(
            StatusCause::PostComputeSendComputedFileFailed,
            e.to_string(),
        )
    })?;
    let computed: pew_poco::result::ComputedFile = serde_json::from_str(&text).map_err(|e| {
        failure(
            StatusCause::PostComputeComputedFileNotFound,
            format!("computed.json does not parse: {e}"),
        )
    })?;
    pew_poco::result::result_digest(&files.output(), &computed, has_callback).map_err(|e| {
        failure(
            StatusCause::PostComputeResultDigestComputationFailed,
            e.to_string(),
        )
    })
}

/// Zips the files under `dir` (recursively, names relative to `dir`, sorted, no directory
/// entries, fixed timestamps so the same result gives the same bytes).
pub fn zip_directory(dir: &Path, zip_path: &Path) -> io::Result<()> {
    let mut paths = Vec::new();
    collect_files(dir, dir, &mut paths)?;
    paths.sort();
    let temporary = zip_path.with_extension("zip.tmp");
    let file = fs::File::create(&temporary)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for relative in paths {
        let name = relative.to_string_lossy().into_owned();
        zip.start_file(name, options).map_err(io::Error::other)?;
        let mut bytes = Vec::new();
        fs::File::open(dir.join(&relative))?.read_to_end(&mut bytes)?;
        zip.write_all(&bytes)?;
    }
    zip.finish().map_err(io::Error::other)?.sync_all()?;
    fs::rename(&temporary, zip_path)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &entry.path(), out)?;
        } else if kind.is_file()
            && let Ok(relative) = entry.path().strip_prefix(root)
        {
            out.push(relative.to_owned());
        }
    }
    Ok(())
}

/// Writes the error result of a failed download so it can be contributed (§3.5), then runs
/// the post-compute on it.
pub fn error_result(
    files: &TaskFiles,
    failure: &StageFailure,
    app_user: (u32, u32),
) -> Result<B256, StageFailure> {
    let _ = files.prepare(app_user);
    pew_poco::result::write_error_result(
        &files.iexec_out(),
        &failure.status.to_string(),
        &failure.cause.to_string(),
    )
    .map_err(|e| StageFailure {
        status: failure.status,
        cause: failure.cause,
        message: format!("cannot write the error result: {e}"),
    })?;
    post_compute(files, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: (u32, u32) = (65534, 65534);

    fn description() -> TaskDescription {
        TaskDescription {
            chain_task_id: B256::repeat_byte(0xe0),
            deal_id: B256::repeat_byte(0xa0),
            index: 2,
            app_uri: "pew/test-app:1".into(),
            max_execution_time: Duration::from_secs(300),
            callback: None,
            params: DealParams::parse(
                r#"{"iexec_args":"a b","iexec_input_files":["https://x/1","https://x/2"]}"#,
            ),
            dataset: None,
            bot_first: 0,
            bot_size: 3,
            contribution_deadline: 0,
            final_deadline: 0,
            is_tee: false,
        }
    }

    #[test]
    fn the_environment_is_the_standard_apps_one() {
        let env = description().compute_env();
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{key} missing"))
        };
        assert_eq!(get("IEXEC_TASK_ID"), format!("0x{}", "e0".repeat(32)));
        assert_eq!(get("IEXEC_TASK_INDEX"), "2");
        assert_eq!(get("IEXEC_BOT_TASK_INDEX"), "2");
        assert_eq!(get("IEXEC_BOT_SIZE"), "3");
        assert_eq!(get("IEXEC_IN"), "/iexec_in");
        assert_eq!(get("IEXEC_OUT"), "/iexec_out");
        assert_eq!(
            get("IEXEC_DATASET_ADDRESS"),
            "0x0000000000000000000000000000000000000000"
        );
        assert_eq!(get("IEXEC_INPUT_FILES_NUMBER"), "2");
        assert_eq!(get("IEXEC_INPUT_FILES_FOLDER"), "/iexec_in");
        assert_eq!(
            get("IEXEC_INPUT_FILE_NAME_2"),
            input_file_name("https://x/2")
        );
    }

    #[test]
    fn without_inputs_there_is_no_input_folder_variable() {
        let mut task = description();
        task.params = DealParams::parse("");
        let env = task.compute_env();
        assert!(
            env.iter()
                .any(|(k, v)| k == "IEXEC_INPUT_FILES_NUMBER" && v == "0")
        );
        assert!(!env.iter().any(|(k, _)| k == "IEXEC_INPUT_FILES_FOLDER"));
    }

    #[test]
    fn input_file_names_are_the_sha256_of_the_url() {
        // sha256("hello") from the reference's upstream vectors.
        assert_eq!(
            input_file_name("hello"),
            "0x2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn post_compute_zips_copies_and_digests_the_deterministic_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = TaskFiles::new(dir.path(), B256::repeat_byte(1));
        files.prepare(NOBODY).unwrap();
        fs::write(files.iexec_out().join("result1.txt"), "A result").unwrap();
        fs::create_dir(files.iexec_out().join("logs")).unwrap();
        fs::write(files.iexec_out().join("logs/run.txt"), "x").unwrap();
        fs::write(
            files.iexec_out().join("computed.json"),
            r#"{"deterministic-output-path":"/iexec_out/result1.txt"}"#,
        )
        .unwrap();
        let digest = post_compute(&files, false).unwrap();
        // sha256 of "A result" from the upstream FileHashUtilsTests.
        assert_eq!(
            format!("{digest:#x}"),
            "0xd885f429a59e0816822fc0927be6a6af20ade2c79db49df6c6022f79cb27ac16"
        );
        assert!(files.result_available());
        let mut archive = zip::ZipArchive::new(fs::File::open(files.zip()).unwrap()).unwrap();
        let mut names: Vec<String> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().to_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["computed.json", "logs/run.txt", "result1.txt"]);

        // The same result zips to the same bytes.
        let first = fs::read(files.zip()).unwrap();
        post_compute(&files, false).unwrap();
        assert_eq!(first, fs::read(files.zip()).unwrap());
    }

    #[test]
    fn a_missing_computed_json_is_the_java_workers_cause() {
        let dir = tempfile::tempdir().unwrap();
        let files = TaskFiles::new(dir.path(), B256::repeat_byte(2));
        files.prepare(NOBODY).unwrap();
        let failure = post_compute(&files, false).unwrap_err();
        assert_eq!(failure.cause, StatusCause::PostComputeComputedFileNotFound);
    }

    #[test]
    fn a_failed_download_contributes_the_error_result() {
        let dir = tempfile::tempdir().unwrap();
        let files = TaskFiles::new(dir.path(), B256::repeat_byte(3));
        let failure = StageFailure {
            status: ReplicateStatus::AppDownloadFailed,
            cause: StatusCause::AppImageDownloadFailed,
            message: String::new(),
        };
        let digest = error_result(&files, &failure, NOBODY).unwrap();
        // The derived vector of the reference (§2.6.2) for this exact error text.
        assert_eq!(
            format!("{digest:#x}"),
            "0x6b234cc858ad3404f912dd7f119afe2178251bec64cb25e5cbeba61dd764fc5d"
        );
    }

    #[test]
    fn purge_removes_everything_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let files = TaskFiles::new(dir.path(), B256::repeat_byte(4));
        files.prepare(NOBODY).unwrap();
        files.purge().unwrap();
        assert!(!files.output().exists());
        files.purge().unwrap();
    }
}
