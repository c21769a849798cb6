//! The hub's read-only calls, decoded into [`pew_poco::abi`] types.

use alloy::primitives::{Address, B256};
use pew_poco::abi::{
    self, AbiError, ChainAccount, ChainApp, ChainCategory, ChainContribution, ChainDataset,
    ChainDeal, ChainTask,
};

use crate::client::Chain;
use crate::error::ChainError;

impl Chain {
    /// `viewTaskABILegacy(task)`; a zero `deal_id` means the task is not initialized.
    pub async fn task(&self, id: B256) -> Result<ChainTask, ChainError> {
        self.view(
            self.hub(),
            "viewTaskABILegacy",
            abi::view_task_calldata(id),
            ChainTask::decode,
        )
        .await
    }

    /// `viewDeal(deal)`.
    pub async fn deal(&self, id: B256) -> Result<ChainDeal, ChainError> {
        self.view(
            self.hub(),
            "viewDeal",
            abi::view_deal_calldata(id),
            ChainDeal::decode,
        )
        .await
    }

    /// `viewCategory(category)`; an unknown category reverts, reported as [`ChainError::Rpc`].
    pub async fn category(&self, id: u64) -> Result<ChainCategory, ChainError> {
        self.view(
            self.hub(),
            "viewCategory",
            abi::view_category_calldata(id),
            ChainCategory::decode,
        )
        .await
    }

    /// `viewApp(app)`.
    pub async fn app(&self, app: Address) -> Result<ChainApp, ChainError> {
        self.view(
            self.hub(),
            "viewApp",
            abi::view_app_calldata(app),
            ChainApp::decode,
        )
        .await
    }

    /// `viewDataset(dataset)`.
    pub async fn dataset(&self, dataset: Address) -> Result<ChainDataset, ChainError> {
        self.view(
            self.hub(),
            "viewDataset",
            abi::view_dataset_calldata(dataset),
            ChainDataset::decode,
        )
        .await
    }

    /// `viewContribution(task, worker)`.
    pub async fn contribution(
        &self,
        task: B256,
        worker: Address,
    ) -> Result<ChainContribution, ChainError> {
        let calldata = abi::view_contribution_calldata(task, worker);
        self.view(
            self.hub(),
            "viewContribution",
            calldata,
            ChainContribution::decode,
        )
        .await
    }

    /// `viewAccount(who)`: stake deposited in the hub and the part of it that is locked.
    pub async fn account(&self, who: Address) -> Result<ChainAccount, ChainError> {
        self.view(
            self.hub(),
            "viewAccount",
            abi::view_account_calldata(who),
            ChainAccount::decode,
        )
        .await
    }

    /// `owner()` of a contract, e.g. the workerpool whose owner signs authorizations.
    pub async fn owner_of(&self, contract: Address) -> Result<Address, ChainError> {
        self.view(contract, "owner", abi::owner_calldata(), abi::decode_owner)
            .await
    }

    async fn view<T>(
        &self,
        contract: Address,
        call: &'static str,
        calldata: Vec<u8>,
        decode: fn(&[u8]) -> Result<T, AbiError>,
    ) -> Result<T, ChainError> {
        let output = self.call(contract, calldata).await?;
        decode(&output).map_err(|source| ChainError::Decode { call, source })
    }
}
