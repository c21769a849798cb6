//! Deployment of the real PoCo (v6.1.0 npm artifacts) in native mode, in the order of PoCo's
//! `deploy/0_deploy.ts`: the EIP-2535 diamond with its reference facets, the orders library,
//! the iExec facets cut into the diamond, the three registries, `configure`, the categories.
//!
//! Differences from the upstream script, none of which changes the deployed code:
//! - contracts are created with plain `CREATE` from the deployer instead of through the
//!   CreateX factory (deterministic addresses do not matter on a throw-away chain), so the
//!   registries are owned by the deployer without the `transferOwnership` init call;
//! - the registries' NFT base URIs (`setBaseURI`, metadata links to iex.ec) are not set;
//! - ownership stays with the deployer, as PoCo's config does for chain 65535.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::sol_types::{SolCall, SolValue};
use anyhow::Context;
use pew_chain::Chain;

use crate::artifacts::{Artifact, ArtifactSource};
use crate::contracts::{DiamondArgs, FacetCut, IDiamondCut, IDiamondInit, IRegistry, IexecAdmin};
use crate::transact::{deploy_contract, transact};

/// `IDiamond.FacetCutAction.Add`.
const FACET_CUT_ADD: u8 = 0;

/// Library every order-handling facet links against.
const ORDERS_LIBRARY: &str = "IexecLibOrders_v5";

/// The facets the diamond is born with (EIP-2535 reference implementation).
const DIAMOND_BASE_FACETS: [ArtifactSource; 3] = [
    ArtifactSource::Deployed("DiamondCutFacet"),
    ArtifactSource::Deployed("DiamondLoupeFacet"),
    ArtifactSource::Deployed("OwnershipFacet"),
];

/// iExec facets in upstream order, native-coin escrow, Boost included as on non-Arbitrum chains.
const POCO_FACETS: [ArtifactSource; 13] = [
    ArtifactSource::Compiled(
        "facets/IexecAccessorsABILegacyFacet.sol/IexecAccessorsABILegacyFacet",
    ),
    ArtifactSource::Compiled("facets/IexecCategoryManagerFacet.sol/IexecCategoryManagerFacet"),
    ArtifactSource::Compiled(
        "facets/IexecConfigurationExtraFacet.sol/IexecConfigurationExtraFacet",
    ),
    ArtifactSource::Compiled("facets/IexecConfigurationFacet.sol/IexecConfigurationFacet"),
    ArtifactSource::Compiled("facets/IexecERC20Facet.sol/IexecERC20Facet"),
    ArtifactSource::Compiled("facets/IexecEscrowNativeFacet.sol/IexecEscrowNativeFacet"),
    ArtifactSource::Compiled("facets/IexecOrderManagementFacet.sol/IexecOrderManagementFacet"),
    ArtifactSource::Compiled("facets/IexecPoco1Facet.sol/IexecPoco1Facet"),
    ArtifactSource::Compiled("facets/IexecPoco2Facet.sol/IexecPoco2Facet"),
    ArtifactSource::Compiled("facets/IexecPocoAccessorsFacet.sol/IexecPocoAccessorsFacet"),
    ArtifactSource::Compiled("facets/IexecPocoBoostFacet.sol/IexecPocoBoostFacet"),
    ArtifactSource::Compiled(
        "facets/IexecPocoBoostAccessorsFacet.sol/IexecPocoBoostAccessorsFacet",
    ),
    ArtifactSource::Compiled("facets/IexecRelayFacet.sol/IexecRelayFacet"),
];

/// Default categories of PoCo's `config/config.json` (§2.5): name and reference time (s).
pub const CATEGORIES: [(&str, u64); 5] = [
    ("XS", 300),
    ("S", 1200),
    ("M", 3600),
    ("L", 10800),
    ("XL", 36000),
];

/// Addresses of a deployed PoCo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PocoDeployment {
    /// The diamond proxy: the hub every client talks to.
    pub hub: Address,
    /// Registry of apps (ERC-721; each app is a proxy contract).
    pub app_registry: Address,
    /// Registry of datasets.
    pub dataset_registry: Address,
    /// Registry of workerpools.
    pub workerpool_registry: Address,
}

/// Deploys PoCo from the `@iexec/poco` package at `package`, sending from `deployer`, who
/// becomes its owner.
pub async fn deploy_poco(deployer: &Chain, package: &Path) -> anyhow::Result<PocoDeployment> {
    let owner = deployer
        .sender_address()
        .context("the deployer chain has no wallet")?;
    let hub = deploy_diamond(deployer, package, owner).await?;
    let diamond = deployer.with_hub(hub);

    let orders_library = deploy_artifact(
        deployer,
        package,
        ArtifactSource::Compiled("libs/IexecLibOrders_v5.sol/IexecLibOrders_v5"),
    )
    .await?;
    let libraries = BTreeMap::from([(ORDERS_LIBRARY.to_owned(), orders_library)]);
    let mut routed = base_facet_selectors(package)?;
    for source in POCO_FACETS {
        let facet = Artifact::load(package, source)?;
        let address = deploy_contract(deployer, &facet, &libraries, &[]).await?;
        // A selector can be served by one facet only; the first one registered keeps it
        // (e.g. `owner()` stays with OwnershipFacet), as upstream's `linkContractToProxy`.
        let selectors: Vec<_> = facet
            .selectors()
            .into_iter()
            .filter(|s| routed.insert(*s))
            .collect();
        let cut = IDiamondCut::diamondCutCall {
            cuts: vec![FacetCut {
                facetAddress: address,
                action: FACET_CUT_ADD,
                functionSelectors: selectors,
            }],
            init: Address::ZERO,
            initCalldata: Bytes::new(),
        };
        transact(&diamond, Some(hub), U256::ZERO, cut.abi_encode())
            .await
            .with_context(|| format!("cutting {} into the diamond", facet.name()))?;
    }

    let app_registry = deploy_registry(
        deployer,
        package,
        "registries/apps/AppRegistry.sol/AppRegistry",
    )
    .await?;
    let dataset_registry = deploy_registry(
        deployer,
        package,
        "registries/datasets/DatasetRegistry.sol/DatasetRegistry",
    )
    .await?;
    let workerpool_registry = deploy_registry(
        deployer,
        package,
        "registries/workerpools/WorkerpoolRegistry.sol/WorkerpoolRegistry",
    )
    .await?;

    let configure = IexecAdmin::configureCall {
        token: Address::ZERO, // native mode: stake is the chain's coin
        name: "Staked RLC".into(),
        symbol: "SRLC".into(),
        decimals: 9,
        appRegistry: app_registry,
        datasetRegistry: dataset_registry,
        workerpoolRegistry: workerpool_registry,
        v3Hub: Address::ZERO,
    };
    transact(&diamond, Some(hub), U256::ZERO, configure.abi_encode())
        .await
        .context("configuring PoCo")?;
    for (name, work_clock_time_ref) in CATEGORIES {
        let create = IexecAdmin::createCategoryCall {
            name: name.into(),
            // Upstream stores `JSON.stringify(description)` of an empty description.
            description: "\"\"".into(),
            workClockTimeRef: U256::from(work_clock_time_ref),
        };
        transact(&diamond, Some(hub), U256::ZERO, create.abi_encode())
            .await
            .with_context(|| format!("creating category {name}"))?;
    }
    Ok(PocoDeployment {
        hub,
        app_registry,
        dataset_registry,
        workerpool_registry,
    })
}

/// The diamond proxy, born with the reference facets and initialized by `DiamondInit.init()`.
async fn deploy_diamond(
    deployer: &Chain,
    package: &Path,
    owner: Address,
) -> anyhow::Result<Address> {
    let init = deploy_artifact(deployer, package, ArtifactSource::Deployed("DiamondInit")).await?;
    let mut cuts = Vec::new();
    for source in DIAMOND_BASE_FACETS {
        let facet = Artifact::load(package, source)?;
        let address = deploy_contract(deployer, &facet, &BTreeMap::new(), &[]).await?;
        cuts.push(FacetCut {
            facetAddress: address,
            action: FACET_CUT_ADD,
            functionSelectors: facet.selectors(),
        });
    }
    let arguments = DiamondArgs {
        owner,
        init,
        initCalldata: IDiamondInit::initCall {}.abi_encode().into(),
    };
    let diamond = Artifact::load(package, ArtifactSource::Compiled("Diamond.sol/Diamond"))?;
    deploy_contract(
        deployer,
        &diamond,
        &BTreeMap::new(),
        &(cuts, arguments).abi_encode_params(),
    )
    .await
}

fn base_facet_selectors(package: &Path) -> anyhow::Result<BTreeSet<FixedBytes<4>>> {
    let mut selectors = BTreeSet::new();
    for source in DIAMOND_BASE_FACETS {
        selectors.extend(Artifact::load(package, source)?.selectors());
    }
    Ok(selectors)
}

async fn deploy_artifact(
    deployer: &Chain,
    package: &Path,
    source: ArtifactSource,
) -> anyhow::Result<Address> {
    let artifact = Artifact::load(package, source)?;
    deploy_contract(deployer, &artifact, &BTreeMap::new(), &[]).await
}

/// A registry, then `initialize(previous = none)` as upstream does for a new chain.
async fn deploy_registry(
    deployer: &Chain,
    package: &Path,
    artifact: &'static str,
) -> anyhow::Result<Address> {
    let registry = deploy_artifact(deployer, package, ArtifactSource::Compiled(artifact)).await?;
    let initialize = IRegistry::initializeCall {
        previous: Address::ZERO,
    };
    transact(
        deployer,
        Some(registry),
        U256::ZERO,
        initialize.abi_encode(),
    )
    .await
    .with_context(|| format!("initializing {artifact}"))?;
    Ok(registry)
}
