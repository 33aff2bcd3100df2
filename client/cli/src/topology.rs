//! Reading the topology file, and pointing it at another zone for `--zone`.

use std::path::Path;

use anyhow::Context;
use riven_client::Topology;

/// Reads and validates the topology at `path`; with `zone`, that zone becomes the local one.
///
/// Every error names the file, because an operator running against several clusters needs to
/// know which file was wrong, not only what was wrong in it.
pub fn load(path: &Path, zone: Option<&str>) -> anyhow::Result<Topology> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read topology file {}", path.display()))?;
    let topology =
        Topology::from_toml_str(&text).with_context(|| format!("invalid topology file {}", path.display()))?;
    match zone {
        None => Ok(topology),
        Some(zone) => with_local_zone(&topology, zone)
            .with_context(|| format!("--zone {zone} does not fit topology file {}", path.display())),
    }
}

/// `topology` with `zone` as its local zone.
///
/// The topology is rebuilt through its builder rather than patched so that it is validated
/// again: an unknown zone is refused with the topology's own message, which lists the zones
/// there are. Making the override the local zone (rather than only the client's zone order)
/// keeps `where` and the client in agreement about which zone is "local".
pub fn with_local_zone(topology: &Topology, zone: &str) -> Result<Topology, riven_client::TopologyError> {
    topology
        .zones()
        .iter()
        .fold(
            Topology::builder(topology.cluster(), zone).vnodes(topology.vnodes()),
            |builder, (name, nodes)| builder.zone(name.clone(), nodes.iter().cloned()),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
cluster = "test"
local_zone = "a"
vnodes = 16

[zones]
a = ["127.0.0.1:1"]
b = ["127.0.0.1:2", "127.0.0.1:3"]
"#;

    #[test]
    fn the_override_keeps_everything_but_the_local_zone() {
        let topology = Topology::from_toml_str(TOML).expect("valid topology");
        let moved = with_local_zone(&topology, "b").expect("b is a zone");
        assert_eq!(moved.local_zone(), "b");
        assert_eq!(moved.cluster(), topology.cluster());
        assert_eq!(moved.vnodes(), topology.vnodes());
        assert_eq!(moved.zones(), topology.zones());
    }

    #[test]
    fn an_unknown_zone_is_refused_naming_the_zones() {
        let topology = Topology::from_toml_str(TOML).expect("valid topology");
        let err = with_local_zone(&topology, "c").expect_err("c is no zone");
        assert!(err.to_string().contains("a, b"), "{err}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.toml");
        let err = load(&missing, None).expect_err("no such file");
        assert!(format!("{err:#}").contains("missing.toml"), "{err:#}");

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "cluster = \"x\"\n").expect("write");
        let err = load(&bad, None).expect_err("no zones");
        assert!(format!("{err:#}").contains("bad.toml"), "{err:#}");

        let good = dir.path().join("good.toml");
        std::fs::write(&good, TOML).expect("write");
        let err = load(&good, Some("nope")).expect_err("unknown zone");
        assert!(format!("{err:#}").contains("--zone nope"), "{err:#}");
        assert_eq!(load(&good, Some("b")).expect("b").local_zone(), "b");
    }
}
