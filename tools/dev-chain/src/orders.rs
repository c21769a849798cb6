//! EIP-712 typed orders of the iExec marketplace (`IexecLibOrders_v5`), signed off-chain by
//! the app owner, the workerpool owner (scheduler) and the requester, then matched on-chain.
//!
//! The typed structs are the orders *without* their `sign` field: that is what PoCo hashes.
//! Dataset orders are not modelled: the dev chain's deals use no dataset.

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};
use pew_poco::{Signature65, Wallet};

use crate::contracts::IexecMarket;

sol! {
    /// `AppOrder` as hashed by PoCo.
    #[derive(Debug, Default)]
    struct AppOrder {
        address app; uint256 appprice; uint256 volume; bytes32 tag;
        address datasetrestrict; address workerpoolrestrict; address requesterrestrict; bytes32 salt;
    }

    /// `WorkerpoolOrder` as hashed by PoCo.
    #[derive(Debug, Default)]
    struct WorkerpoolOrder {
        address workerpool; uint256 workerpoolprice; uint256 volume; bytes32 tag;
        uint256 category; uint256 trust;
        address apprestrict; address datasetrestrict; address requesterrestrict; bytes32 salt;
    }

    /// `RequestOrder` as hashed by PoCo.
    #[derive(Debug, Default)]
    struct RequestOrder {
        address app; uint256 appmaxprice; address dataset; uint256 datasetmaxprice;
        address workerpool; uint256 workerpoolmaxprice; address requester; uint256 volume;
        bytes32 tag; uint256 category; uint256 trust; address beneficiary; address callback;
        string params; bytes32 salt;
    }
}

/// PoCo's EIP-712 domain (`IexecConfigurationFacet._domain`): `iExecODB` version `5.0.0`,
/// bound to the chain and to the hub (diamond proxy) address.
pub fn poco_domain(chain_id: u64, hub: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some("iExecODB".into()),
        Some("5.0.0".into()),
        Some(U256::from(chain_id)),
        Some(hub),
        None,
    )
}

/// Signs an order's EIP-712 digest with the raw key (no EIP-191 prefix), as PoCo's
/// `_verifySignature(owner, _toTypedDataHash(order.hash()), sign)` expects.
pub fn sign_order<T: SolStruct>(order: &T, domain: &Eip712Domain, signer: &Wallet) -> Signature65 {
    signer.sign_hash(order.eip712_signing_hash(domain))
}

fn signature_bytes(order: &impl SolStruct, domain: &Eip712Domain, signer: &Wallet) -> Bytes {
    Bytes::copy_from_slice(sign_order(order, domain, signer).as_bytes())
}

impl AppOrder {
    /// The order as `matchOrders` takes it, signed by the app owner.
    pub fn signed(self, domain: &Eip712Domain, app_owner: &Wallet) -> IexecMarket::AppOrder {
        let sign = signature_bytes(&self, domain, app_owner);
        IexecMarket::AppOrder {
            app: self.app,
            appprice: self.appprice,
            volume: self.volume,
            tag: self.tag,
            datasetrestrict: self.datasetrestrict,
            workerpoolrestrict: self.workerpoolrestrict,
            requesterrestrict: self.requesterrestrict,
            salt: self.salt,
            sign,
        }
    }
}

impl WorkerpoolOrder {
    /// The order as `matchOrders` takes it, signed by the workerpool owner (the scheduler).
    pub fn signed(self, domain: &Eip712Domain, scheduler: &Wallet) -> IexecMarket::WorkerpoolOrder {
        let sign = signature_bytes(&self, domain, scheduler);
        IexecMarket::WorkerpoolOrder {
            workerpool: self.workerpool,
            workerpoolprice: self.workerpoolprice,
            volume: self.volume,
            tag: self.tag,
            category: self.category,
            trust: self.trust,
            apprestrict: self.apprestrict,
            datasetrestrict: self.datasetrestrict,
            requesterrestrict: self.requesterrestrict,
            salt: self.salt,
            sign,
        }
    }
}

impl RequestOrder {
    /// The order as `matchOrders` takes it, signed by the requester.
    pub fn signed(self, domain: &Eip712Domain, requester: &Wallet) -> IexecMarket::RequestOrder {
        let sign = signature_bytes(&self, domain, requester);
        IexecMarket::RequestOrder {
            app: self.app,
            appmaxprice: self.appmaxprice,
            dataset: self.dataset,
            datasetmaxprice: self.datasetmaxprice,
            workerpool: self.workerpool,
            workerpoolmaxprice: self.workerpoolmaxprice,
            requester: self.requester,
            volume: self.volume,
            tag: self.tag,
            category: self.category,
            trust: self.trust,
            beneficiary: self.beneficiary,
            callback: self.callback,
            params: self.params,
            salt: self.salt,
            sign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::b256;

    // `IexecLibOrders_v5` constants (PoCo v6.1.0).
    #[test]
    fn type_hashes_equal_pocos_constants() {
        assert_eq!(
            AppOrder::eip712_type_hash(&AppOrder::default()),
            b256!("60815a0eeec47dddf1615fe53b31d016c31444e01b9d796db365443a6445d008")
        );
        assert_eq!(
            WorkerpoolOrder::eip712_type_hash(&WorkerpoolOrder::default()),
            b256!("aa3429fb281b34691803133d3d978a75bb77c617ed6bc9aa162b9b30920022bb")
        );
        assert_eq!(
            RequestOrder::eip712_type_hash(&RequestOrder::default()),
            b256!("f24e853034a3a450aba845a82914fbb564ad85accca6cf62be112a154520fae0")
        );
    }

    #[test]
    fn domain_type_is_the_four_field_eip712_domain() {
        // EIP712DOMAIN_TYPEHASH = keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        let domain = poco_domain(65535, Address::repeat_byte(0x11));
        assert_eq!(
            domain.encode_type(),
            "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
        );
    }

    #[test]
    fn signature_recovers_to_the_signer_and_depends_on_the_hub() {
        let wallet = Wallet::from_private_key(&[7; 32]).unwrap();
        let order = AppOrder {
            app: Address::repeat_byte(0xaa),
            volume: U256::from(1),
            ..Default::default()
        };
        let domain = poco_domain(65535, Address::repeat_byte(0x11));
        let signature = sign_order(&order, &domain, &wallet);
        assert_eq!(
            signature
                .recover(order.eip712_signing_hash(&domain))
                .unwrap(),
            wallet.address()
        );
        let other_hub = poco_domain(65535, Address::repeat_byte(0x12));
        assert_ne!(
            order.eip712_signing_hash(&domain),
            order.eip712_signing_hash(&other_hub)
        );
    }
}
