//! The JSON-RPC connection: retried calls, contract calls, and the transaction sender.

use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEnvelope, TxLegacy};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::ReceiptResponse;
use alloy::primitives::{Address, B256, Bytes, Signature, TxKind, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{TransactionInput, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use alloy::transports::TransportResult;
use pew_poco::Wallet;
use tokio::sync::Mutex;

use crate::backoff::{Backoff, RetryPolicy};
use crate::error::ChainError;
use crate::gas::GasPricePolicy;
use crate::nonce::{NonceFile, starting_nonce};
use crate::receipt::{ReceiptLog, TxReceipt};

/// Tunables of a [`Chain`]; the defaults follow the iExec Java worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainOptions {
    /// Gas price rule for sent transactions.
    pub gas_price: GasPricePolicy,
    /// Retries of calls that fail to reach the endpoint.
    pub rpc_retry: RetryPolicy,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// How often to ask for a receipt while waiting.
    pub receipt_poll: Backoff,
    /// Give up waiting for a receipt after this long.
    pub receipt_timeout: Duration,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            gas_price: GasPricePolicy::default(),
            rpc_retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(20),
            // A dev chain mines at once; a public chain within a few seconds.
            receipt_poll: Backoff {
                first: Duration::from_millis(50),
                max: Duration::from_secs(2),
            },
            receipt_timeout: Duration::from_secs(180),
        }
    }
}

/// A transaction to send: a call (`to` set) or a contract creation (`to` unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRequest {
    /// Called contract or paid account; `None` deploys `input` as init code.
    pub to: Option<Address>,
    /// Wei transferred with the call.
    pub value: U256,
    /// Calldata, or init code for a creation.
    pub input: Vec<u8>,
    /// Gas limit.
    pub gas: u64,
}

/// A client of one chain and one PoCo hub. Cheap to clone: clones share the connection and
/// the transaction sender, so transactions stay one at a time across clones.
#[derive(Clone)]
pub struct Chain {
    inner: Arc<Inner>,
    hub: Address,
}

struct Inner {
    provider: RootProvider,
    chain_id: u64,
    options: ChainOptions,
    sender: Option<Sender>,
}

struct Sender {
    wallet: Wallet,
    nonce_file: Option<NonceFile>,
    /// The next nonce, once known. Holding the lock is what serializes transactions.
    next_nonce: Mutex<Option<u64>>,
}

/// reqwest is built without a default TLS crypto provider (to stay on ring rather than
/// aws-lc); building a client before one is installed panics.
fn install_ring_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Chain {
    /// Connects with the default [`ChainOptions`]; reads the chain id. Without a wallet the
    /// client is read-only. `nonce_file` keeps the sender's nonce across restarts.
    pub async fn connect(
        rpc_url: &str,
        hub: Address,
        wallet: Option<&Wallet>,
        nonce_file: Option<PathBuf>,
    ) -> Result<Self, ChainError> {
        Self::connect_with(rpc_url, hub, wallet, nonce_file, ChainOptions::default()).await
    }

    /// [`Chain::connect`] with explicit options.
    pub async fn connect_with(
        rpc_url: &str,
        hub: Address,
        wallet: Option<&Wallet>,
        nonce_file: Option<PathBuf>,
        options: ChainOptions,
    ) -> Result<Self, ChainError> {
        let url = rpc_url
            .parse::<reqwest::Url>()
            .map_err(|error| ChainError::InvalidUrl {
                url: rpc_url.to_owned(),
                reason: error.to_string(),
            })?;
        install_ring_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .build()
            .map_err(ChainError::HttpClient)?;
        let provider = RootProvider::new(RpcClient::new_http_with_client(http, url));
        let chain_id_provider = &provider;
        let chain_id = retry_rpc(&options.rpc_retry, "eth_chainId", || async move {
            chain_id_provider.get_chain_id().await
        })
        .await?;
        let sender = wallet.map(|wallet| Sender {
            wallet: wallet.clone(),
            nonce_file: nonce_file.map(NonceFile::new),
            next_nonce: Mutex::new(None),
        });
        Ok(Self {
            inner: Arc::new(Inner {
                provider,
                chain_id,
                options,
                sender,
            }),
            hub,
        })
    }

    /// The same connection and sender (nonces stay serialized) pointed at another hub, e.g.
    /// once a freshly deployed hub's address is known.
    pub fn with_hub(&self, hub: Address) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            hub,
        }
    }

    /// Chain id reported by the node at connection.
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// The PoCo hub (diamond proxy) this client talks to.
    pub fn hub(&self) -> Address {
        self.hub
    }

    /// Address of the sending wallet, if any.
    pub fn sender_address(&self) -> Option<Address> {
        self.inner
            .sender
            .as_ref()
            .map(|sender| sender.wallet.address())
    }

    /// Latest block number.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.rpc("eth_blockNumber", || async move {
            self.inner.provider.get_block_number().await
        })
        .await
    }

    /// Native balance of `who`, in wei.
    pub async fn balance(&self, who: Address) -> Result<U256, ChainError> {
        self.rpc("eth_getBalance", || async move {
            self.inner.provider.get_balance(who).await
        })
        .await
    }

    /// Runtime bytecode at `address` (empty for an account without code).
    pub async fn code_at(&self, address: Address) -> Result<Bytes, ChainError> {
        self.rpc("eth_getCode", || async move {
            self.inner.provider.get_code_at(address).await
        })
        .await
    }

    /// `eth_call` of raw calldata against the latest block.
    pub async fn call(&self, to: Address, calldata: Vec<u8>) -> Result<Bytes, ChainError> {
        let request = TransactionRequest::default()
            .to(to)
            .input(TransactionInput::new(calldata.into()));
        let request = &request;
        self.rpc("eth_call", || async move {
            self.inner.provider.call(request.clone()).await
        })
        .await
    }

    /// `eth_call` of a typed contract function, decoded.
    pub async fn call_sol<C: SolCall>(
        &self,
        to: Address,
        call: &C,
    ) -> Result<C::Return, ChainError> {
        let output = self.call(to, call.abi_encode()).await?;
        C::abi_decode_returns(&output).map_err(|error| ChainError::Decode {
            call: C::SIGNATURE,
            source: error.into(),
        })
    }

    /// Gas the node estimates for `request` sent from our wallet.
    pub async fn estimate_gas(&self, request: &TxRequest) -> Result<u64, ChainError> {
        let mut estimate = TransactionRequest::default()
            .value(request.value)
            .input(TransactionInput::new(request.input.clone().into()));
        estimate.to = Some(request.to.map_or(TxKind::Create, TxKind::Call));
        estimate.from = self.sender_address();
        let estimate = &estimate;
        self.rpc("eth_estimateGas", || async move {
            self.inner.provider.estimate_gas(estimate.clone()).await
        })
        .await
    }

    /// Sends a call to `to` with `calldata` and `gas` as a legacy EIP-155 transaction and
    /// waits for its receipt. See [`Chain::submit`].
    pub async fn send(
        &self,
        to: Address,
        calldata: Vec<u8>,
        gas: u64,
    ) -> Result<TxReceipt, ChainError> {
        self.submit(TxRequest {
            to: Some(to),
            value: U256::ZERO,
            input: calldata,
            gas,
        })
        .await
    }

    /// Signs and sends `request` as a legacy EIP-155 transaction, then waits for it to be
    /// mined. Transactions go one at a time: the next one is signed only after this one's
    /// receipt (or failure), so nonces never race. A reverted transaction is an error.
    pub async fn submit(&self, request: TxRequest) -> Result<TxReceipt, ChainError> {
        let sender = self.inner.sender.as_ref().ok_or(ChainError::NoWallet)?;
        let mut next_nonce = sender.next_nonce.lock().await;
        let nonce = match *next_nonce {
            Some(nonce) => nonce,
            None => self.first_nonce(sender).await?,
        };
        let network_price = self
            .rpc("eth_gasPrice", || async move {
                self.inner.provider.get_gas_price().await
            })
            .await?;
        let transaction = TxLegacy {
            chain_id: Some(self.inner.chain_id),
            nonce,
            gas_price: self.inner.options.gas_price.price_for(network_price),
            gas_limit: request.gas,
            to: request.to.map_or(TxKind::Create, TxKind::Call),
            value: request.value,
            input: request.input.into(),
        };
        let (tx_hash, raw) = sign_legacy(transaction, &sender.wallet);
        tracing::debug!(%tx_hash, nonce, "sending transaction");
        let raw = &raw;
        let sent = self
            .rpc("eth_sendRawTransaction", || async move {
                self.inner
                    .provider
                    .send_raw_transaction(raw)
                    .await
                    .map(|_| ())
            })
            .await;
        if let Err(error) = sent {
            // A retried send may be refused as "already known" although its first attempt got
            // through; only a transaction the node does not know really failed.
            if !matches!(self.is_known(tx_hash).await, Ok(true)) {
                // Our nonce view may be wrong (e.g. "nonce too low"): ask the node next time.
                *next_nonce = None;
                return Err(error);
            }
        }
        *next_nonce = Some(nonce + 1);
        if let Some(file) = &sender.nonce_file {
            // The transaction is out whatever happens here; failing the call would make the
            // caller retry it under a new nonce. Only restart safety is degraded.
            if let Err(error) = persist_nonce(file, nonce + 1).await {
                tracing::warn!(%error, "could not persist the next nonce");
            }
        }
        self.wait_for_receipt(tx_hash).await
    }

    /// The first nonce after start or after a failed send: the node's pending count, raised to
    /// the persisted value if the node forgot some of our transactions.
    async fn first_nonce(&self, sender: &Sender) -> Result<u64, ChainError> {
        let address = sender.wallet.address();
        let pending = self
            .rpc("eth_getTransactionCount", || async move {
                self.inner
                    .provider
                    .get_transaction_count(address)
                    .pending()
                    .await
            })
            .await?;
        let persisted = match &sender.nonce_file {
            Some(file) => file.load()?,
            None => None,
        };
        Ok(starting_nonce(persisted, pending))
    }

    async fn is_known(&self, tx_hash: B256) -> Result<bool, ChainError> {
        let found = self
            .rpc("eth_getTransactionByHash", || async move {
                self.inner.provider.get_transaction_by_hash(tx_hash).await
            })
            .await?;
        Ok(found.is_some())
    }

    /// Polls for the receipt of `tx_hash` until [`ChainOptions::receipt_timeout`].
    pub async fn wait_for_receipt(&self, tx_hash: B256) -> Result<TxReceipt, ChainError> {
        let options = &self.inner.options;
        let started = tokio::time::Instant::now();
        let mut step = 0;
        loop {
            let receipt = self
                .rpc("eth_getTransactionReceipt", || async move {
                    self.inner.provider.get_transaction_receipt(tx_hash).await
                })
                .await?;
            if let Some(receipt) = receipt {
                return mined_receipt(&receipt);
            }
            let waited = started.elapsed();
            if waited >= options.receipt_timeout {
                return Err(ChainError::ReceiptTimeout { tx_hash, waited });
            }
            tokio::time::sleep(options.receipt_poll.delay(step)).await;
            step += 1;
        }
    }

    async fn rpc<T, F, Fut>(&self, method: &'static str, operation: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = TransportResult<T>>,
    {
        retry_rpc(&self.inner.options.rpc_retry, method, operation).await
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Chain")
            .field("chain_id", &self.inner.chain_id)
            .field("hub", &self.hub)
            .field("sender", &self.sender_address())
            .finish_non_exhaustive()
    }
}

/// Runs `operation`, retrying while the endpoint cannot be reached. (A closure returning a
/// future rather than an `async` closure: the futures of `async` closures are not provably
/// `Send`, and callers spawn chain calls on multi-threaded runtimes.)
async fn retry_rpc<T, F, Fut>(
    policy: &RetryPolicy,
    method: &'static str,
    mut operation: F,
) -> Result<T, ChainError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TransportResult<T>>,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(source) if !source.is_transport_error() => {
                return Err(ChainError::Rpc { method, source });
            }
            Err(source) if attempt >= attempts => {
                return Err(ChainError::Unreachable {
                    method,
                    attempts,
                    source,
                });
            }
            Err(error) => {
                let pause = policy.backoff.delay(attempt - 1);
                tracing::warn!(method, attempt, %error, ?pause, "RPC unreachable, retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
        }
    }
}

/// Signs with the pew wallet (the key never leaves it) and returns the hash and raw bytes.
fn sign_legacy(transaction: TxLegacy, wallet: &Wallet) -> (B256, Vec<u8>) {
    let signature = wallet.sign_hash(transaction.signature_hash());
    let parity = signature.v() == 28;
    let signature = Signature::new(signature.r().into(), signature.s().into(), parity);
    let envelope = TxEnvelope::Legacy(transaction.into_signed(signature));
    (*envelope.tx_hash(), envelope.encoded_2718())
}

async fn persist_nonce(file: &NonceFile, next: u64) -> Result<(), ChainError> {
    let file = file.clone();
    let path = file.path().to_path_buf();
    // fsync on an SD card can take tens of milliseconds: keep it off the async workers.
    tokio::task::spawn_blocking(move || file.store(next))
        .await
        .map_err(|error| ChainError::NonceTask {
            path,
            reason: error.to_string(),
        })?
        .map_err(ChainError::from)
}

fn mined_receipt(receipt: &TransactionReceipt) -> Result<TxReceipt, ChainError> {
    let tx_hash = receipt.transaction_hash();
    let block_number = receipt
        .block_number()
        .ok_or(ChainError::ReceiptWithoutBlock { tx_hash })?;
    if !receipt.status() {
        return Err(ChainError::Reverted {
            tx_hash,
            block_number,
        });
    }
    let logs = receipt
        .inner
        .logs()
        .iter()
        .map(|log| ReceiptLog {
            address: log.address(),
            topics: log.topics().to_vec(),
            data: log.data().data.clone(),
        })
        .collect();
    Ok(TxReceipt {
        tx_hash,
        block_number,
        gas_used: receipt.gas_used(),
        contract_address: receipt.contract_address(),
        logs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_legacy_transaction_recovers_to_the_wallet_and_carries_eip155_chain_id() {
        use alloy::eips::eip2718::Decodable2718;
        use pew_poco::Signature65;

        let wallet = Wallet::from_private_key(&[0x42; 32]).unwrap();
        let transaction = TxLegacy {
            chain_id: Some(65535),
            nonce: 9,
            gas_price: 0,
            gas_limit: 500_000,
            to: TxKind::Call(Address::repeat_byte(0xab)),
            value: U256::ZERO,
            input: vec![0x34, 0x62, 0x34, 0x84].into(),
        };
        let (hash, raw) = sign_legacy(transaction, &wallet);
        let decoded = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
        let TxEnvelope::Legacy(signed) = &decoded else {
            panic!("not a legacy transaction")
        };
        assert_eq!(*signed.hash(), hash);
        assert_eq!(signed.tx().chain_id, Some(65535));
        assert_eq!(signed.tx().nonce, 9);
        let signature = signed.signature();
        let v = 27 + u8::from(signature.v());
        let as_signed = Signature65::from_rsv(signature.r().into(), signature.s().into(), v);
        assert_eq!(
            as_signed.recover(signed.signature_hash()).unwrap(),
            wallet.address()
        );
    }

    /// Compiled, never run: every chain call can be spawned on a multi-threaded runtime.
    #[allow(dead_code)]
    fn chain_futures_are_send(chain: &Chain) {
        fn spawnable<T: Send>(_: T) {}
        spawnable(chain.block_number());
        spawnable(chain.task(B256::ZERO));
        spawnable(chain.call(Address::ZERO, Vec::new()));
        spawnable(chain.send(Address::ZERO, Vec::new(), 21_000));
    }
}
