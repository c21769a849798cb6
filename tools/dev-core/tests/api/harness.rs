//! A double on an in-memory chain, a scripted worker speaking HTTP, and a STOMP-over-SockJS
//! client, all through real sockets.

use std::io::Write as _;
use std::sync::{Arc, Once};
use std::time::Duration;

use dev_core::Clock;
use dev_core::{ChainDealView, ChainSettings, Config, DevCore, MemoryChain, TaskStatus};
use pew_iexec::model::{
    ReplicateStatusUpdate, ReplicateTaskSummary, SignatureValue, TaskNotification,
    WorkerpoolAuthorization,
};
use pew_iexec::sockjs::{self, Frame as SockJsFrame};
use pew_iexec::status::ReplicateStatus;
use pew_iexec::stomp;
use pew_poco::{Address, B256, Wallet};

/// Bound on every wait of the tests; only reached when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Upstream's scheduler test key (SignatureServiceTests), owner of the test workerpool.
pub const SCHEDULER_KEY: &str =
    "0x2a46e8c1535792f6689b10d5c882c9363910c30751ec193ae71ec71630077909";
/// Upstream's worker test key (SignatureUtilsTests), address 0xd154…6d70.
pub const WORKER_KEY: &str = "0x6dacd24b3d49d0c50c555aa728c60a57aa08beb363e3a90cce2e4e5d327c6ee2";

pub fn wallet(key: &str) -> Wallet {
    let key: B256 = key.parse().unwrap();
    Wallet::from_private_key(&key.0).unwrap()
}

pub fn workerpool() -> Address {
    Address::repeat_byte(0x77)
}

fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// Lowercase 0x-hex, the form the Java worker logs in with.
pub fn lower(address: Address) -> String {
    format!("{address:#x}")
}

pub struct Harness {
    pub core: DevCore,
    pub chain: Arc<MemoryChain>,
    pub clock: Clock,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A double with test timings (no ask period, one chain check), adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let clock = Clock::new();
        let chain = Arc::new(MemoryChain::new(clock.clone()));
        let settings = ChainSettings {
            chain_id: 65535,
            sidechain: true,
            node_url: "http://127.0.0.1:8545".into(),
            hub: Address::repeat_byte(0x42),
            block_time: Duration::from_secs(5),
        };
        let mut config = Config::new(wallet(SCHEDULER_KEY), workerpool(), settings);
        config.clock = clock.clone();
        config.ask_for_replicate_period = Duration::ZERO;
        config.timing.chain_check_attempts = 1;
        config.timing.chain_check_interval = Duration::ZERO;
        adjust(&mut config);
        let core = DevCore::start(config, chain.clone()).await.unwrap();
        Self {
            core,
            chain,
            clock,
            http: http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.core.base_url())
    }

    /// Records a deal of `tasks` tasks (category of 300 s, IPFS results) with this workerpool.
    pub fn add_deal(&self, deal_id: B256, trust: u64, tasks: u64) {
        self.chain.add_deal(
            deal_id,
            ChainDealView {
                workerpool: workerpool(),
                workerpool_owner: wallet(SCHEDULER_KEY).address(),
                trust,
                category_time_ref: 300,
                tag: B256::ZERO,
                callback: Address::ZERO,
                params: r#"{"iexec_result_storage_provider":"ipfs"}"#.into(),
                start_time: self.clock.unix_secs(),
                bot_first: 0,
                bot_size: tasks,
            },
        );
    }

    /// Adds and publishes a deal, then waits until its tasks are initialized.
    pub async fn deal(&self, deal_id: B256, trust: u64, tasks: u64) -> Vec<B256> {
        self.add_deal(deal_id, trust, tasks);
        let task_ids = self.core.publish_deal(deal_id, tasks).await.unwrap();
        for &task_id in &task_ids {
            self.core
                .wait_for_task_status(task_id, TaskStatus::Initialized, PATIENCE)
                .await
                .unwrap();
        }
        task_ids
    }

    /// Logs `wallet` in through challenge, signature and login.
    pub async fn login(&self, wallet: Wallet) -> FakeWorker {
        let address = lower(wallet.address());
        let challenge = self
            .http
            .get(self.url("/workers/challenge"))
            .query(&[("walletAddress", &address)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let signature = pew_poco::challenge::sign_login(&wallet, &challenge);
        let response = self
            .http
            .post(self.url("/workers/login"))
            .query(&[("walletAddress", &address)])
            .json(&SignatureValue {
                value: signature.to_string(),
            })
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let token = response.text().await.unwrap();
        FakeWorker {
            wallet,
            address,
            token,
            http: self.http.clone(),
            base: self.core.base_url().to_owned(),
        }
    }

    /// A logged-in, registered worker with `cpu_nb` slots.
    pub async fn worker(&self, key: &str, cpu_nb: u32) -> FakeWorker {
        let worker = self.login(wallet(key)).await;
        assert_eq!(worker.register(cpu_nb, false).await.status(), 200);
        worker
    }
}

/// The HTTP side of a worker, scripted by the test.
pub struct FakeWorker {
    pub wallet: Wallet,
    pub address: String,
    pub token: String,
    pub http: reqwest::Client,
    pub base: String,
}

impl FakeWorker {
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub async fn register(&self, cpu_nb: u32, gpu: bool) -> reqwest::Response {
        let model = pew_iexec::model::WorkerModel {
            name: "fake".into(),
            wallet_address: self.address.clone(),
            os: "Linux".into(),
            cpu: "aarch64".into(),
            cpu_nb,
            gpu_enabled: gpu,
            ..Default::default()
        };
        self.http
            .post(format!("{}/workers/register", self.base))
            .header("Authorization", self.bearer())
            .json(&model)
            .send()
            .await
            .unwrap()
    }

    pub async fn ping(&self) -> reqwest::Response {
        self.http
            .post(format!("{}/workers/ping", self.base))
            .header("Authorization", self.bearer())
            .send()
            .await
            .unwrap()
    }

    pub async fn ask(&self, block: i64) -> reqwest::Response {
        self.http
            .get(format!("{}/replicates/available", self.base))
            .query(&[("blockNumber", block)])
            .header("Authorization", self.bearer())
            .send()
            .await
            .unwrap()
    }

    /// Asks for work and expects a task.
    pub async fn take_task(&self) -> ReplicateTaskSummary {
        let response = self.ask(1).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn interrupted(&self, block: i64) -> Vec<TaskNotification> {
        let response = self
            .http
            .get(format!("{}/replicates/interrupted", self.base))
            .query(&[("blockNumber", block)])
            .header("Authorization", self.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Sends a status update; returns the HTTP status and the raw body.
    pub async fn update(&self, task_id: B256, update: &ReplicateStatusUpdate) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}/replicates/{task_id}/updateStatus", self.base))
            .header("Authorization", self.bearer())
            .json(update)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn report(&self, task_id: B256, status: ReplicateStatus) -> (u16, String) {
        self.update(task_id, &ReplicateStatusUpdate::new(status))
            .await
    }

    /// Reports `statuses` in order, each expected to be accepted with the given reply.
    pub async fn walk(&self, task_id: B256, steps: &[(ReplicateStatus, &str)]) {
        for (status, reply) in steps {
            assert_eq!(
                self.report(task_id, *status).await,
                (200, format!("\"{reply}\"")),
                "{status}"
            );
        }
    }
}

/// A status update carrying a chain receipt.
pub fn with_receipt(status: ReplicateStatus, block_number: u64) -> ReplicateStatusUpdate {
    ReplicateStatusUpdate::with_details(
        status,
        pew_iexec::model::ReplicateStatusDetails {
            chain_receipt: Some(pew_iexec::model::ChainReceipt {
                block_number,
                tx_hash: "0x01".into(),
            }),
            ..Default::default()
        },
    )
}

/// `iexec_out.zip` holding `result.txt` and the `computed.json` pointing at it; returns the zip
/// and the result digest (`sha256` of the file).
pub fn result_zip(content: &[u8]) -> (Vec<u8>, B256) {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("computed.json", options).unwrap();
    zip.write_all(br#"{"deterministic-output-path":"/iexec_out/result.txt"}"#)
        .unwrap();
    zip.start_file("result.txt", options).unwrap();
    zip.write_all(content).unwrap();
    (
        zip.finish().unwrap().into_inner(),
        pew_poco::sha256(content),
    )
}

/// A STOMP client over SockJS XHR polling, as the worker runs it.
pub struct StompClient {
    http: reqwest::Client,
    session_url: String,
    /// Frames received in one poll but not consumed yet.
    pending: std::sync::Mutex<std::collections::VecDeque<stomp::Frame>>,
}

impl StompClient {
    /// Opens a SockJS session and connects STOMP.
    pub async fn connect(harness: &Harness, session: &str) -> Self {
        let client = Self {
            http: harness.http.clone(),
            session_url: harness.url(&format!("/connect/000/{session}")),
            pending: Default::default(),
        };
        assert_eq!(client.poll().await, SockJsFrame::Open);
        client.send(&[stomp::connect()]).await;
        let connected = client.next_frame().await;
        assert_eq!(connected.command, "CONNECTED");
        client
    }

    pub async fn poll(&self) -> SockJsFrame {
        let body = self
            .http
            .post(format!("{}/xhr", self.session_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sockjs::parse_frame(&body).unwrap()
    }

    pub async fn send(&self, frames: &[stomp::Frame]) {
        let messages: Vec<String> = frames.iter().map(stomp::Frame::encode).collect();
        let response = self
            .http
            .post(format!("{}/xhr_send", self.session_url))
            .body(sockjs::encode_messages(&messages))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    pub async fn subscribe(&self, task_id: B256) {
        let topic = stomp::task_topic(&task_id.to_string());
        self.send(&[stomp::subscribe(&format!("sub-{task_id}"), &topic)])
            .await;
    }

    /// The next STOMP frame, polling past heartbeats.
    pub async fn next_frame(&self) -> stomp::Frame {
        loop {
            if let Some(frame) = self.pending.lock().unwrap().pop_front() {
                return frame;
            }
            match self.poll().await {
                SockJsFrame::Heartbeat => continue,
                SockJsFrame::Messages(messages) => {
                    let mut pending = self.pending.lock().unwrap();
                    pending.extend(
                        messages
                            .iter()
                            .flat_map(|message| stomp::parse_frames(message).unwrap()),
                    );
                }
                other => panic!("unexpected SockJS frame {other:?}"),
            }
        }
    }

    /// The next task notification pushed to this session.
    pub async fn next_notification(&self) -> TaskNotification {
        let frame = tokio::time::timeout(PATIENCE, self.next_frame())
            .await
            .expect("no notification");
        assert_eq!(frame.command, "MESSAGE");
        assert_eq!(frame.header("content-type"), Some("application/json"));
        serde_json::from_str(frame.body_text().unwrap()).unwrap()
    }
}

/// The statuses from a new replicate to `COMPUTED`, with the core's replies.
pub const TO_COMPUTED: &[(ReplicateStatus, &str)] = &[
    (ReplicateStatus::Starting, "PLEASE_CONTINUE"),
    (ReplicateStatus::Started, "PLEASE_DOWNLOAD_APP"),
    (ReplicateStatus::AppDownloading, "PLEASE_CONTINUE"),
    (ReplicateStatus::AppDownloaded, "PLEASE_DOWNLOAD_DATA"),
    (ReplicateStatus::DataDownloading, "PLEASE_CONTINUE"),
    (ReplicateStatus::DataDownloaded, "PLEASE_COMPUTE"),
    (ReplicateStatus::Computing, "PLEASE_CONTINUE"),
    (ReplicateStatus::Computed, "PLEASE_CONTRIBUTE"),
];

impl Harness {
    /// Plays a worker from its new replicate to an accepted `CONTRIBUTED` of `digest`; returns
    /// the block of the contribution.
    pub async fn contribute(&self, worker: &FakeWorker, task_id: B256, digest: B256) -> u64 {
        worker.walk(task_id, TO_COMPUTED).await;
        worker
            .walk(
                task_id,
                &[(ReplicateStatus::Contributing, "PLEASE_CONTINUE")],
            )
            .await;
        let hash = pew_poco::result_hash(task_id, digest);
        let block = self
            .chain
            .contribute(task_id, worker.wallet.address(), hash)
            .unwrap();
        let reply = worker
            .update(task_id, &with_receipt(ReplicateStatus::Contributed, block))
            .await;
        assert_eq!(reply, (200, "\"PLEASE_WAIT\"".to_owned()));
        block
    }

    /// Plays a winner's reveal; returns its block.
    pub async fn reveal(&self, worker: &FakeWorker, task_id: B256, digest: B256) -> u64 {
        worker
            .walk(task_id, &[(ReplicateStatus::Revealing, "PLEASE_CONTINUE")])
            .await;
        let block = self
            .chain
            .reveal(task_id, worker.wallet.address(), digest)
            .unwrap();
        let reply = worker
            .update(task_id, &with_receipt(ReplicateStatus::Revealed, block))
            .await;
        assert_eq!(reply, (200, "\"PLEASE_WAIT\"".to_owned()));
        block
    }

    /// `POST /v1/results/token` with the worker's signature of the authorization.
    pub async fn proxy_token(
        &self,
        worker: &FakeWorker,
        authorization: &WorkerpoolAuthorization,
    ) -> reqwest::Response {
        let hash = pew_poco::authorization_hash(
            worker.wallet.address(),
            authorization.chain_task_id.parse().unwrap(),
            authorization.enclave_challenge.parse().unwrap(),
        );
        let signature = worker.wallet.sign_eth_signed(hash);
        self.http
            .post(self.url("/v1/results/token"))
            .header("Authorization", signature.to_string())
            .json(authorization)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/results` of `zip` with a proxy token.
    pub async fn proxy_upload(&self, token: &str, task_id: B256, zip: &[u8]) -> reqwest::Response {
        use base64::Engine as _;
        let model = serde_json::json!({
            "chainTaskId": task_id.to_string(),
            "dealId": B256::ZERO.to_string(),
            "taskIndex": 0,
            "image": null,
            "cmd": null,
            "zip": base64::engine::general_purpose::STANDARD.encode(zip),
            "deterministHash": B256::ZERO.to_string(),
            "enclaveSignature": format!("0x{}", "00".repeat(65)),
        });
        self.http
            .post(self.url("/v1/results"))
            .header("Authorization", token)
            .json(&model)
            .send()
            .await
            .unwrap()
    }

    /// The worker's whole upload: token, result, IPFS hash. Returns the result link.
    pub async fn upload(
        &self,
        worker: &FakeWorker,
        authorization: &WorkerpoolAuthorization,
        zip: &[u8],
    ) -> String {
        let response = self.proxy_token(worker, authorization).await;
        assert_eq!(response.status(), 200);
        let token = response.text().await.unwrap();
        let task_id: B256 = authorization.chain_task_id.parse().unwrap();
        let response = self.proxy_upload(&token, task_id, zip).await;
        assert_eq!(response.status(), 200);
        let link = response.text().await.unwrap();
        let hash = self
            .http
            .get(self.url(&format!("/v1/results/{task_id}/ipfshash")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(link, format!("/ipfs/{hash}"));
        pew_iexec::model::result_link("ipfs", &link)
    }
}
