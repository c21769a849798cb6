//! pew-chain against a real anvil: gas-free chains, nonces across restarts, error kinds.

use std::time::Duration;

use dev_chain::{Anvil, AnvilConfig, NpmPackages};
use pew_chain::{Backoff, Chain, ChainError, ChainOptions, RetryPolicy};
use pew_poco::{Address, Wallet};

async fn start_anvil(dir: &std::path::Path, gas_free: bool) -> Anvil {
    let packages = tokio::task::spawn_blocking(NpmPackages::install)
        .await
        .unwrap()
        .unwrap();
    let config = AnvilConfig {
        gas_free,
        ..AnvilConfig::default()
    };
    Anvil::start(&packages.anvil_binary().unwrap(), dir, config)
        .await
        .unwrap()
}

#[tokio::test]
async fn penniless_wallet_can_send_on_a_gas_free_chain_and_its_nonce_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let anvil = start_anvil(dir.path(), true).await;
    let wallet = Wallet::random();
    let nonce_file = dir.path().join("nonce");
    let target = Address::repeat_byte(0x42);

    let chain = Chain::connect(
        anvil.rpc_url(),
        Address::ZERO,
        Some(&wallet),
        Some(nonce_file.clone()),
    )
    .await
    .unwrap();
    assert_eq!(chain.chain_id(), 65535);
    assert_eq!(
        chain.balance(wallet.address()).await.unwrap(),
        pew_poco::U256::ZERO
    );
    let first = chain.send(target, Vec::new(), 21_000).await.unwrap();
    let second = chain.send(target, Vec::new(), 21_000).await.unwrap();
    assert!(second.block_number > first.block_number && first.block_number > 0);
    drop(chain);
    assert_eq!(std::fs::read_to_string(&nonce_file).unwrap(), "2\n");

    // A restarted worker continues from the persisted nonce.
    let restarted = Chain::connect(
        anvil.rpc_url(),
        Address::ZERO,
        Some(&wallet),
        Some(nonce_file.clone()),
    )
    .await
    .unwrap();
    restarted.send(target, Vec::new(), 21_000).await.unwrap();
    assert_eq!(std::fs::read_to_string(&nonce_file).unwrap(), "3\n");

    // A stale file (wallet used elsewhere meanwhile) loses to the node's pending count.
    std::fs::write(&nonce_file, "1\n").unwrap();
    let stale = Chain::connect(
        anvil.rpc_url(),
        Address::ZERO,
        Some(&wallet),
        Some(nonce_file.clone()),
    )
    .await
    .unwrap();
    stale.send(target, Vec::new(), 21_000).await.unwrap();
    assert_eq!(std::fs::read_to_string(&nonce_file).unwrap(), "4\n");
}

#[tokio::test]
async fn priced_chain_rejects_a_penniless_sender_as_an_rpc_error_and_needs_a_wallet_to_send() {
    let dir = tempfile::tempdir().unwrap();
    let anvil = start_anvil(dir.path(), false).await;
    let penniless = Wallet::random();
    let chain = Chain::connect(anvil.rpc_url(), Address::ZERO, Some(&penniless), None)
        .await
        .unwrap();
    let refused = chain
        .send(Address::repeat_byte(1), Vec::new(), 21_000)
        .await;
    assert!(
        matches!(
            refused,
            Err(ChainError::Rpc {
                method: "eth_sendRawTransaction",
                ..
            })
        ),
        "{refused:?}"
    );

    // A funded account pays a price within the worker's rule: ×1.3 of the quote, ≤ 22 gwei.
    let funded = Chain::connect(
        anvil.rpc_url(),
        Address::ZERO,
        Some(&anvil.accounts()[0]),
        None,
    )
    .await
    .unwrap();
    let receipt = funded
        .send(Address::repeat_byte(1), Vec::new(), 21_000)
        .await
        .unwrap();
    assert_eq!(receipt.gas_used, 21_000);

    let read_only = Chain::connect(anvil.rpc_url(), Address::ZERO, None, None)
        .await
        .unwrap();
    assert!(matches!(
        read_only.send(Address::ZERO, Vec::new(), 21_000).await,
        Err(ChainError::NoWallet)
    ));
}

#[tokio::test]
async fn closed_port_is_reported_as_unreachable_after_the_retries() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ChainOptions {
        rpc_retry: RetryPolicy {
            attempts: 3,
            backoff: Backoff {
                first: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
        },
        ..ChainOptions::default()
    };
    let refused = Chain::connect_with(
        &format!("http://127.0.0.1:{port}"),
        Address::ZERO,
        None,
        None,
        options,
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(ChainError::Unreachable {
                method: "eth_chainId",
                attempts: 3,
                ..
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn persisted_nonce_ahead_of_the_node_is_used_and_the_unmined_transaction_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let anvil = start_anvil(dir.path(), true).await;
    let wallet = Wallet::random();
    let nonce_file = dir.path().join("nonce");
    // The node counts 0 transactions; the file claims nonces up to 4 were handed out, so the
    // transaction gets nonce 5 and waits in the pool behind the gap: it is never mined.
    std::fs::write(&nonce_file, "5\n").unwrap();
    let options = ChainOptions {
        receipt_poll: Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        receipt_timeout: Duration::from_millis(100),
        ..ChainOptions::default()
    };
    let chain = Chain::connect_with(
        anvil.rpc_url(),
        Address::ZERO,
        Some(&wallet),
        Some(nonce_file.clone()),
        options,
    )
    .await
    .unwrap();
    let queued = chain
        .send(Address::repeat_byte(0x42), Vec::new(), 21_000)
        .await;
    assert!(
        matches!(queued, Err(ChainError::ReceiptTimeout { .. })),
        "{queued:?}"
    );
    assert_eq!(std::fs::read_to_string(&nonce_file).unwrap(), "6\n");
}
