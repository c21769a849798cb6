//! Interfaces of the PoCo administration, registry, escrow and market calls the dev chain
//! makes (declarations only; the code comes from the npm package's artifacts).

use alloy::sol;

sol! {
    /// EIP-2535 facet cut, as taken by the diamond's constructor and `diamondCut`.
    #[derive(Debug)]
    struct FacetCut { address facetAddress; uint8 action; bytes4[] functionSelectors; }

    /// Second constructor argument of PoCo's `Diamond`.
    #[derive(Debug)]
    struct DiamondArgs { address owner; address init; bytes initCalldata; }

    interface IDiamondCut {
        function diamondCut(FacetCut[] cuts, address init, bytes initCalldata) external;
    }

    interface IDiamondInit {
        function init() external;
    }

    interface IRegistry {
        function initialize(address previous) external;
    }

    interface IAppRegistry {
        function createApp(address owner, string name, string appType, bytes multiaddr,
                           bytes32 checksum, bytes mrEnclave) external returns (address);
        function predictApp(address owner, string name, string appType, bytes multiaddr,
                            bytes32 checksum, bytes mrEnclave) external view returns (address);
    }

    interface IWorkerpoolRegistry {
        function createWorkerpool(address owner, string description) external returns (address);
        function predictWorkerpool(address owner, string description) external view returns (address);
    }

    interface IexecAdmin {
        function configure(address token, string name, string symbol, uint8 decimals,
                           address appRegistry, address datasetRegistry, address workerpoolRegistry,
                           address v3Hub) external;
        function createCategory(string name, string description, uint256 workClockTimeRef)
            external returns (uint256);
        function countCategory() external view returns (uint256);
        function eip712domain_separator() external view returns (bytes32);
    }

    interface IexecEscrowNative {
        function deposit() external payable returns (bool);
        function depositFor(address target) external payable returns (bool);
    }

    /// `IexecLibOrders_v5` orders as `matchOrders` takes them (with their signatures).
    interface IexecMarket {
        #[derive(Debug, Default)]
        struct AppOrder {
            address app; uint256 appprice; uint256 volume; bytes32 tag;
            address datasetrestrict; address workerpoolrestrict; address requesterrestrict;
            bytes32 salt; bytes sign;
        }
        #[derive(Debug, Default)]
        struct DatasetOrder {
            address dataset; uint256 datasetprice; uint256 volume; bytes32 tag;
            address apprestrict; address workerpoolrestrict; address requesterrestrict;
            bytes32 salt; bytes sign;
        }
        #[derive(Debug, Default)]
        struct WorkerpoolOrder {
            address workerpool; uint256 workerpoolprice; uint256 volume; bytes32 tag;
            uint256 category; uint256 trust;
            address apprestrict; address datasetrestrict; address requesterrestrict;
            bytes32 salt; bytes sign;
        }
        #[derive(Debug, Default)]
        struct RequestOrder {
            address app; uint256 appmaxprice; address dataset; uint256 datasetmaxprice;
            address workerpool; uint256 workerpoolmaxprice; address requester; uint256 volume;
            bytes32 tag; uint256 category; uint256 trust; address beneficiary; address callback;
            string params; bytes32 salt; bytes sign;
        }

        function matchOrders(AppOrder apporder, DatasetOrder datasetorder,
                             WorkerpoolOrder workerpoolorder, RequestOrder requestorder)
            external returns (bytes32 dealid);

        event OrdersMatched(bytes32 dealid, bytes32 appHash, bytes32 datasetHash,
                            bytes32 workerpoolHash, bytes32 requestHash, uint256 volume);
    }
}
