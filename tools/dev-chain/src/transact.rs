//! Sending with a gas limit estimated by the node, for the dev chain's own transactions.

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use anyhow::Context;
use pew_chain::{Chain, TxReceipt, TxRequest};

use crate::artifacts::Artifact;

/// Sends `input` to `to` (or creates a contract when `None`) with the node's gas estimate
/// plus a margin, and waits for the receipt.
pub async fn transact(
    chain: &Chain,
    to: Option<Address>,
    value: U256,
    input: Vec<u8>,
) -> anyhow::Result<TxReceipt> {
    let mut request = TxRequest {
        to,
        value,
        input,
        gas: 0,
    };
    let estimate = chain.estimate_gas(&request).await?;
    // Estimates are exact for the state they ran on; leave room for storage refund quirks.
    request.gas = estimate + estimate / 5;
    Ok(chain.submit(request).await?)
}

/// Deploys `artifact` linked against `libraries`, with ABI-encoded `constructor_arguments`.
pub async fn deploy_contract(
    chain: &Chain,
    artifact: &Artifact,
    libraries: &BTreeMap<String, Address>,
    constructor_arguments: &[u8],
) -> anyhow::Result<Address> {
    let mut init_code = artifact.init_code(libraries)?;
    init_code.extend_from_slice(constructor_arguments);
    let receipt = transact(chain, None, U256::ZERO, init_code)
        .await
        .with_context(|| format!("deploying {}", artifact.name()))?;
    let address = receipt
        .contract_address
        .with_context(|| format!("{} deployment created no contract", artifact.name()))?;
    tracing::debug!(contract = artifact.name(), %address, gas = receipt.gas_used, "deployed");
    Ok(address)
}
