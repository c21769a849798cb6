//! Settings of the double, with upstream's defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use pew_poco::{Address, Wallet};

use crate::clock::Clock;

/// The chain the workerpool lives on, as served by `GET /config/chain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSettings {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Gas-free chain: workers skip their balance checks.
    pub sidechain: bool,
    /// JSON-RPC URL workers should use.
    pub node_url: String,
    /// iExec hub (PoCo proxy) address.
    pub hub: Address,
    /// Average block interval; also the unit of the scheduler's chain re-checks.
    pub block_time: Duration,
}

/// Timers and limits. Defaults are iexec-core's; tests shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Lifetime of a login challenge from its creation (5 min).
    pub challenge_ttl: Duration,
    /// Lifetime of a scheduler JWT (1 h).
    pub jwt_ttl: Duration,
    /// A worker that has not pinged for this long is lost (1 min).
    pub worker_lost_after: Duration,
    /// Period of the lost-worker detector (30 s).
    pub worker_lost_check_every: Duration,
    /// Period of the deadline detectors (contribution, reveal, upload, final) and of the
    /// re-examination of every running task (30 s).
    pub task_check_every: Duration,
    /// Time given to the uploader before another revealer is asked (2 min).
    pub result_upload_timeout: Duration,
    /// SockJS heartbeat frame interval (5 s).
    pub sockjs_heartbeat: Duration,
    /// A SockJS session without a pending poll for this long is closed (5 s).
    pub sockjs_disconnect_delay: Duration,
    /// Tries of the on-chain checks of `CONTRIBUTED`/`REVEALED` (3).
    pub chain_check_attempts: u32,
    /// Wait between two tries (6 blocks upstream).
    pub chain_check_interval: Duration,
}

impl Timing {
    /// Upstream defaults for a chain with `block_time`.
    pub fn upstream(block_time: Duration) -> Self {
        Self {
            challenge_ttl: Duration::from_secs(5 * 60),
            jwt_ttl: Duration::from_secs(60 * 60),
            worker_lost_after: Duration::from_secs(60),
            worker_lost_check_every: Duration::from_secs(30),
            task_check_every: Duration::from_secs(30),
            result_upload_timeout: Duration::from_secs(2 * 60),
            sockjs_heartbeat: Duration::from_secs(5),
            sockjs_disconnect_delay: Duration::from_secs(5),
            chain_check_attempts: 3,
            chain_check_interval: block_time * 6,
        }
    }
}

/// Everything the double needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Base URL advertised to workers as config server and result proxy; defaults to
    /// `http://<bound address>`.
    pub public_url: Option<String>,
    /// Version answered by `GET /version` and written in the JWT audience.
    pub version: String,
    /// The scheduler's wallet: owner of the workerpool, signer of authorizations and sender of
    /// `initialize`/`finalize`.
    pub scheduler: Wallet,
    /// The workerpool this scheduler serves.
    pub workerpool: Address,
    /// Served by `GET /config/chain`.
    pub chain: ChainSettings,
    /// Minimum delay between two asks of one worker (`IEXEC_ASK_REPLICATE_PERIOD`, 5 s).
    pub ask_for_replicate_period: Duration,
    /// Worker version required; empty accepts any.
    pub required_worker_version: String,
    /// Wallets allowed to log in, compared exactly; empty allows everyone.
    pub whitelist: Vec<String>,
    /// Challenge returned to every wallet, to replay upstream signature vectors.
    pub fixed_challenge: Option<String>,
    /// Answer `POST /workers/ping` with upstream's exact value, the hash of the public
    /// configuration, which survives restarts. By default a per-start random part is mixed in,
    /// so that a restarted double looks like a reconfigured core and workers notice the restart.
    pub stable_session_id: bool,
    /// Timers.
    pub timing: Timing,
    /// Wall clock for deadlines; tests advance it.
    pub clock: Clock,
}

impl Config {
    /// Upstream defaults, listening on a free loopback port.
    pub fn new(scheduler: Wallet, workerpool: Address, chain: ChainSettings) -> Self {
        let timing = Timing::upstream(chain.block_time);
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_url: None,
            version: "9.3.0".to_owned(),
            scheduler,
            workerpool,
            chain,
            ask_for_replicate_period: Duration::from_millis(5000),
            required_worker_version: String::new(),
            whitelist: Vec::new(),
            fixed_challenge: None,
            stable_session_id: false,
            timing,
            clock: Clock::new(),
        }
    }
}
