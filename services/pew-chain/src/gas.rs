//! Gas price rule of the Java worker (`IEXEC_GAS_PRICE_MULTIPLIER`, `IEXEC_GAS_PRICE_CAP`).

/// One gwei in wei.
pub const GWEI: u128 = 1_000_000_000;

/// How the price of a legacy transaction is derived from the node's `eth_gasPrice`.
///
/// The node's quote is raised so the transaction is not stuck behind a small price rise, then
/// capped so a price spike cannot drain the worker's gas balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasPricePolicy {
    /// Multiplier applied to the network price, in percent (130 = ×1.3).
    pub multiplier_percent: u32,
    /// Highest price ever offered, in wei.
    pub cap_wei: u128,
}

impl Default for GasPricePolicy {
    /// The iExec worker's defaults: ×1.3, capped at 22 gwei.
    fn default() -> Self {
        Self {
            multiplier_percent: 130,
            cap_wei: 22 * GWEI,
        }
    }
}

impl GasPricePolicy {
    /// Price to offer given the network's quote. A gas-free chain (quote 0) yields 0.
    pub fn price_for(&self, network_price_wei: u128) -> u128 {
        let raised = network_price_wei.saturating_mul(u128::from(self.multiplier_percent)) / 100;
        raised.min(self.cap_wei)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_network_price_by_thirty_percent() {
        assert_eq!(GasPricePolicy::default().price_for(10 * GWEI), 13 * GWEI);
    }

    #[test]
    fn caps_at_twenty_two_gwei() {
        let policy = GasPricePolicy::default();
        // 17 gwei × 1.3 = 22.1 gwei: just above the cap.
        assert_eq!(policy.price_for(17 * GWEI), 22 * GWEI);
        assert_eq!(policy.price_for(500 * GWEI), 22 * GWEI);
    }

    #[test]
    fn gas_free_chain_stays_free() {
        assert_eq!(GasPricePolicy::default().price_for(0), 0);
    }

    #[test]
    fn huge_quote_saturates_to_the_cap_instead_of_overflowing() {
        assert_eq!(GasPricePolicy::default().price_for(u128::MAX), 22 * GWEI);
    }

    #[test]
    fn fractions_of_a_wei_are_truncated() {
        // 1 wei × 1.3 = 1.3 wei → 1 wei; 7 wei × 1.3 = 9.1 wei → 9 wei.
        let policy = GasPricePolicy::default();
        assert_eq!(policy.price_for(1), 1);
        assert_eq!(policy.price_for(7), 9);
    }
}
