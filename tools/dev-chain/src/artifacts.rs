//! Compiled contracts read from the `@iexec/poco` npm package at run time: ABI, init code,
//! library placeholders and the function selectors a diamond cut registers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, FixedBytes, keccak256};
use anyhow::{Context, bail};
use serde::Deserialize;

/// Where a contract's compiled form lives in the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactSource {
    /// A Hardhat artifact, path below `artifacts/contracts/` without `.json`.
    Compiled(&'static str),
    /// A hardhat-deploy record below `deployments/arbitrum/` (used for the EIP-2535 reference
    /// facets, whose Hardhat artifacts the package does not ship). Only its `abi` and
    /// constructor-less `bytecode` are read, never its address.
    Deployed(&'static str),
}

/// One library placeholder: `length` bytes at byte offset `start` of the init code.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
struct LinkOffset {
    start: usize,
    length: usize,
}

/// One ABI entry; only what a selector needs.
#[derive(Debug, Clone, Deserialize)]
struct AbiEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    inputs: Vec<AbiParameter>,
}

#[derive(Debug, Clone, Deserialize)]
struct AbiParameter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    components: Vec<AbiParameter>,
}

impl AbiParameter {
    /// The type as it appears in a canonical signature: tuples spelled out as `(…)`,
    /// keeping array suffixes (`tuple[]` → `(address,bytes)[]`).
    fn canonical_type(&self) -> String {
        match self.kind.strip_prefix("tuple") {
            Some(array_suffix) => format!("({}){array_suffix}", canonical_list(&self.components)),
            None => self.kind.clone(),
        }
    }
}

fn canonical_list(parameters: &[AbiParameter]) -> String {
    parameters
        .iter()
        .map(AbiParameter::canonical_type)
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Deserialize)]
struct ArtifactFile {
    abi: Vec<AbiEntry>,
    bytecode: String,
    /// source file → library name → placeholders.
    #[serde(default, rename = "linkReferences")]
    link_references: BTreeMap<String, BTreeMap<String, Vec<LinkOffset>>>,
}

/// A contract ready to deploy.
#[derive(Debug, Clone)]
pub struct Artifact {
    name: String,
    abi: Vec<AbiEntry>,
    /// Init code as hex without `0x`; library placeholders are `__$…$__` text until linked.
    bytecode_hex: String,
    links: BTreeMap<String, Vec<LinkOffset>>,
}

impl Artifact {
    /// Loads `source` from the package rooted at `package`.
    pub fn load(package: &Path, source: ArtifactSource) -> anyhow::Result<Self> {
        let (path, name) = match source {
            ArtifactSource::Compiled(relative) => {
                (package.join("artifacts/contracts").join(relative), relative)
            }
            ArtifactSource::Deployed(name) => {
                (package.join("deployments/arbitrum").join(name), name)
            }
        };
        let path = with_json_extension(path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(name.rsplit('/').next().unwrap_or(name), &text)
            .with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses artifact JSON (Hardhat or hardhat-deploy format).
    pub fn parse(name: &str, json: &str) -> anyhow::Result<Self> {
        let file: ArtifactFile = serde_json::from_str(json)?;
        let bytecode_hex = file
            .bytecode
            .strip_prefix("0x")
            .unwrap_or(&file.bytecode)
            .to_owned();
        if bytecode_hex.is_empty() {
            bail!("{name} has no bytecode (an interface or abstract contract)");
        }
        let links = file.link_references.into_values().flatten().collect();
        Ok(Self {
            name: name.to_owned(),
            abi: file.abi,
            bytecode_hex,
            links,
        })
    }

    /// Contract name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Init code with every library placeholder replaced by the library's address.
    pub fn init_code(&self, libraries: &BTreeMap<String, Address>) -> anyhow::Result<Vec<u8>> {
        let mut hex = self.bytecode_hex.clone();
        for (library, offsets) in &self.links {
            let address = libraries.get(library).with_context(|| {
                format!(
                    "{} needs library {library}, which is not deployed",
                    self.name
                )
            })?;
            let address_hex = alloy::hex::encode(address.as_slice());
            for offset in offsets {
                let range = offset.start * 2..(offset.start + offset.length) * 2;
                if offset.length != Address::len_bytes() || range.end > hex.len() {
                    bail!("{}: bad link reference {offset:?} for {library}", self.name);
                }
                hex.replace_range(range, &address_hex);
            }
        }
        alloy::hex::decode(&hex)
            .with_context(|| format!("{}: init code is not hex after linking", self.name))
    }

    /// Selectors a diamond routes to this facet: every function, plus the EIP-2535 sentinels
    /// `0x00000000` for `receive` and `0xffffffff` for `fallback`.
    pub fn selectors(&self) -> Vec<FixedBytes<4>> {
        self.abi
            .iter()
            .filter_map(|entry| match entry.kind.as_str() {
                "function" => {
                    let signature = format!("{}({})", entry.name, canonical_list(&entry.inputs));
                    Some(FixedBytes::from_slice(&keccak256(signature)[..4]))
                }
                "receive" => Some(FixedBytes::ZERO),
                "fallback" => Some(FixedBytes::repeat_byte(0xff)),
                _ => None,
            })
            .collect()
    }
}

fn with_json_extension(path: PathBuf) -> PathBuf {
    let mut name = path.into_os_string();
    name.push(".json");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACET: &str = r#"{
        "abi": [
            {"type": "function", "name": "viewAccount", "stateMutability": "view",
             "inputs": [{"name": "account", "type": "address"}],
             "outputs": [{"name": "", "type": "tuple", "components": [
                 {"name": "stake", "type": "uint256"}, {"name": "locked", "type": "uint256"}]}]},
            {"type": "function", "name": "matchOrders", "stateMutability": "nonpayable",
             "inputs": [{"name": "a", "type": "tuple", "components": [{"name": "x", "type": "address"}, {"name": "y", "type": "bytes"}]},
                        {"name": "b", "type": "tuple[]", "components": [{"name": "z", "type": "uint256"}]}],
             "outputs": []},
            {"type": "event", "name": "Deposit", "anonymous": false, "inputs": []},
            {"type": "receive", "stateMutability": "payable"},
            {"type": "fallback", "stateMutability": "payable"}
        ],
        "bytecode": "0x6001__$0123456789abcdef0123456789abcdef01$__6002__$0123456789abcdef0123456789abcdef01$__",
        "linkReferences": {"contracts/libs/Lib.sol": {"Lib": [{"start": 2, "length": 20}, {"start": 24, "length": 20}]}}
    }"#;

    #[test]
    fn selectors_cover_functions_with_tuples_and_the_receive_and_fallback_sentinels() {
        let artifact = Artifact::parse("Facet", FACET).unwrap();
        let expected = [
            keccak256("viewAccount(address)")[..4].to_vec(),
            keccak256("matchOrders((address,bytes),(uint256)[])")[..4].to_vec(),
            vec![0, 0, 0, 0],
            vec![0xff, 0xff, 0xff, 0xff],
        ];
        let mut actual: Vec<Vec<u8>> = artifact.selectors().iter().map(|s| s.to_vec()).collect();
        let mut expected = expected.to_vec();
        actual.sort();
        expected.sort();
        assert_eq!(actual, expected);
    }

    #[test]
    fn linking_writes_the_library_address_at_every_placeholder() {
        let artifact = Artifact::parse("Facet", FACET).unwrap();
        let library = Address::repeat_byte(0xab);
        let code = artifact
            .init_code(&BTreeMap::from([("Lib".to_owned(), library)]))
            .unwrap();
        assert_eq!(code.len(), 44);
        assert_eq!(&code[..2], &[0x60, 0x01]);
        assert_eq!(&code[2..22], library.as_slice());
        assert_eq!(&code[22..24], &[0x60, 0x02]);
        assert_eq!(&code[24..44], library.as_slice());
    }

    #[test]
    fn missing_library_is_named_in_the_error() {
        let artifact = Artifact::parse("Facet", FACET).unwrap();
        let error = artifact.init_code(&BTreeMap::new()).unwrap_err();
        assert!(error.to_string().contains("Lib"), "{error}");
    }

    #[test]
    fn interface_without_bytecode_is_rejected() {
        let error = Artifact::parse("IFace", r#"{"abi": [], "bytecode": "0x"}"#).unwrap_err();
        assert!(error.to_string().contains("no bytecode"), "{error}");
    }
}
