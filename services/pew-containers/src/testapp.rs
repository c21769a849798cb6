//! A `FROM scratch` image around one static binary, as a `docker save` archive, so tests and
//! offline nodes can have an app image without any registry.
//!
//! The archive is the legacy docker-archive layout, which both `docker load` and podman read:
//! `manifest.json`, the image config named after its digest, and one layer tar holding the
//! binary. Every timestamp and owner is fixed, so the same binary always gives the same bytes
//! and the same image id.

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Where the binary sits in the image; it is the image's entrypoint.
pub const ENTRYPOINT: &str = "/test-app";

/// The OCI architecture name of a Rust `target_arch` (`x86_64` → `amd64`, `aarch64` →
/// `arm64`), for [`docker_archive`].
pub fn oci_architecture(rust_arch: &str) -> Option<&'static str> {
    match rust_arch {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        "arm" => Some("arm"),
        _ => None,
    }
}

/// A docker-archive tar of an image named `image` (e.g. `localhost/pew-test-app:1`) for the OCI
/// architecture `arch` (`amd64`, `arm64`), whose only file is `binary` at [`ENTRYPOINT`].
/// The binary must be statically linked: the image has no libc.
pub fn docker_archive(binary: &[u8], image: &str, arch: &str) -> Vec<u8> {
    let layer = tar_of(&[(ENTRYPOINT.trim_start_matches('/'), binary, 0o755)]);
    let layer_digest = sha256_hex(&layer);
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": [ENTRYPOINT],
            "Env": ["PATH=/"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "pew-containers testapp" }],
    })
    .to_string();
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [image],
        "Layers": [layer_name],
    }])
    .to_string();

    tar_of(&[
        (config_name.as_str(), config.as_bytes(), 0o644),
        (layer_name.as_str(), &layer, 0o644),
        ("manifest.json", manifest.as_bytes(), 0o644),
    ])
}

/// A tar of regular files owned by root and dated 1970, in the order given.
fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(*mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        // Writing into a Vec cannot fail, and every path is a fixed-format relative ASCII name
        // shorter than ustar's 100 bytes (at most a 64-digit digest and "/layer.tar").
        archive
            .append_data(&mut header, path, *content)
            .expect("tar entry into memory");
    }
    archive.into_inner().expect("tar trailer into memory")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read as _;

    fn entries(archive: &[u8]) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut reader = tar::Archive::new(archive);
        let mut found = BTreeMap::new();
        for entry in reader.entries().into_iter().flatten().flatten() {
            let mut entry = entry;
            let path = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mode = entry.header().mode().unwrap_or_default();
            let mut content = Vec::new();
            let _ = entry.read_to_end(&mut content);
            found.insert(path, (mode, content));
        }
        found
    }

    #[test]
    fn same_input_gives_identical_archives() {
        let a = docker_archive(b"\x7fELF binary", "localhost/app:1", "amd64");
        let b = docker_archive(b"\x7fELF binary", "localhost/app:1", "amd64");
        assert_eq!(a, b);
        assert_ne!(
            a,
            docker_archive(b"\x7fELF other", "localhost/app:1", "amd64")
        );
    }

    #[test]
    fn archive_is_a_consistent_docker_save_layout() -> Result<(), serde_json::Error> {
        let binary = b"\x7fELF static app";
        let files = entries(&docker_archive(binary, "localhost/app:1", "arm64"));

        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"].1)?;
        assert_eq!(manifest[0]["RepoTags"], json!(["localhost/app:1"]));
        let config_name = manifest[0]["Config"].as_str().unwrap_or_default();
        let layer_name = manifest[0]["Layers"][0].as_str().unwrap_or_default();

        // The config is named after its own digest and lists the layer's digest.
        let config_bytes = &files[config_name].1;
        assert_eq!(config_name, format!("{}.json", sha256_hex(config_bytes)));
        let config: serde_json::Value = serde_json::from_slice(config_bytes)?;
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Entrypoint"], json!([ENTRYPOINT]));
        let layer = &files[layer_name].1;
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([format!("sha256:{}", sha256_hex(layer))])
        );

        // The layer holds the executable binary and nothing else.
        let layer_files = entries(layer);
        assert_eq!(layer_files.len(), 1);
        assert_eq!(layer_files["test-app"], (0o755, binary.to_vec()));
        Ok(())
    }

    #[test]
    fn architectures_use_oci_names() {
        assert_eq!(oci_architecture("x86_64"), Some("amd64"));
        assert_eq!(oci_architecture("aarch64"), Some("arm64"));
        assert_eq!(oci_architecture("riscv64"), None);
    }
}
