//! The parts of a transaction receipt the worker and its tests look at.

use alloy::primitives::{Address, B256, Bytes};

/// One event emitted by a mined transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptLog {
    /// Contract that emitted it.
    pub address: Address,
    /// `topics[0]` is the event signature hash, then the indexed arguments.
    pub topics: Vec<B256>,
    /// ABI-encoded non-indexed arguments.
    pub data: Bytes,
}

/// A successfully mined transaction (reverted ones are reported as errors instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxReceipt {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Block that included it (never 0: the genesis block holds no transactions).
    pub block_number: u64,
    /// Gas actually used.
    pub gas_used: u64,
    /// Address of the contract it created, for deployments.
    pub contract_address: Option<Address>,
    /// Events it emitted, in order.
    pub logs: Vec<ReceiptLog>,
}

impl TxReceipt {
    /// First log whose event signature is `topic0` and first indexed argument is `topic1`.
    pub fn log(&self, topic0: B256, topic1: B256) -> Option<&ReceiptLog> {
        self.logs
            .iter()
            .find(|log| log.topics.first() == Some(&topic0) && log.topics.get(1) == Some(&topic1))
    }

    /// Block number to report for the event `topic0` about `topic1` (e.g. `TaskContribute`
    /// of a task id), as the Java worker does when it builds its `chainReceipt`; `None` when
    /// this transaction did not emit it.
    pub fn find_log(&self, topic0: B256, topic1: B256) -> Option<u64> {
        self.log(topic0, topic1).map(|_| self.block_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt_with(logs: Vec<ReceiptLog>) -> TxReceipt {
        TxReceipt {
            tx_hash: B256::repeat_byte(1),
            block_number: 77,
            gas_used: 21_000,
            contract_address: None,
            logs,
        }
    }

    fn log(topics: Vec<B256>) -> ReceiptLog {
        ReceiptLog {
            address: Address::repeat_byte(9),
            topics,
            data: Bytes::new(),
        }
    }

    #[test]
    fn finds_the_event_about_the_right_task() {
        let event = B256::repeat_byte(0xe0);
        let task = B256::repeat_byte(0x7a);
        let other_task = B256::repeat_byte(0x7b);
        let receipt = receipt_with(vec![log(vec![event, other_task]), log(vec![event, task])]);
        assert_eq!(receipt.find_log(event, task), Some(77));
        assert_eq!(receipt.log(event, task).map(|l| l.topics[1]), Some(task));
    }

    #[test]
    fn other_events_and_anonymous_logs_do_not_match() {
        let task = B256::repeat_byte(0x7a);
        let receipt = receipt_with(vec![log(vec![]), log(vec![B256::repeat_byte(0xe1), task])]);
        assert_eq!(receipt.find_log(B256::repeat_byte(0xe0), task), None);
    }
}
