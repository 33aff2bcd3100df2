//! Topology validation, in code and from TOML.

use riven_client::{Topology, TopologyError, DEFAULT_VNODES};

const THREE_ZONES: &str = r#"
cluster = "main"
local_zone = "us-east-1b"

[zones]
us-east-1a = ["10.0.1.1:11211", "10.0.1.2:11211"]
us-east-1b = ["10.0.2.1:11211", "cache-b2.internal:11211"]
us-east-1c = ["[fd00::3]:11211"]
"#;

#[test]
fn a_three_zone_toml_parses() {
    let topology = Topology::from_toml_str(THREE_ZONES).unwrap();
    assert_eq!(topology.cluster(), "main");
    assert_eq!(topology.local_zone(), "us-east-1b");
    assert_eq!(topology.vnodes(), DEFAULT_VNODES);
    let zones: Vec<&str> = topology.zones().keys().map(String::as_str).collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert_eq!(
        topology.nodes("us-east-1b").unwrap(),
        ["10.0.2.1:11211", "cache-b2.internal:11211"]
    );
    assert_eq!(topology.nodes("us-east-1c").unwrap(), ["[fd00::3]:11211"]);
    assert!(topology.nodes("us-west-2a").is_none());
}

#[test]
fn toml_matches_the_builder() {
    let built = Topology::builder("main", "us-east-1b")
        .zone("us-east-1c", ["[fd00::3]:11211"])
        .zone("us-east-1a", ["10.0.1.1:11211", "10.0.1.2:11211"])
        .zone("us-east-1b", ["10.0.2.1:11211", "cache-b2.internal:11211"])
        .build()
        .unwrap();
    assert_eq!(Topology::from_toml_str(THREE_ZONES).unwrap(), built);
}

#[test]
fn vnodes_can_be_set() {
    let text = THREE_ZONES.replace("[zones]", "vnodes = 40\n\n[zones]");
    assert_eq!(Topology::from_toml_str(&text).unwrap().vnodes(), 40);
    let text = THREE_ZONES.replace("[zones]", "vnodes = 0\n\n[zones]");
    assert!(matches!(Topology::from_toml_str(&text), Err(TopologyError::ZeroVnodes)));
}

#[test]
fn a_local_zone_that_is_not_listed_is_an_error() {
    let text = r#"
cluster = "main"
local_zone = "us-east-1d"

[zones]
us-east-1a = ["10.0.1.1:11211"]
us-east-1b = ["10.0.2.1:11211"]
"#;
    let err = Topology::from_toml_str(text).unwrap_err();
    assert!(
        matches!(&err, TopologyError::UnknownLocalZone { local_zone, zones }
            if local_zone == "us-east-1d" && zones == &["us-east-1a", "us-east-1b"]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "local zone `us-east-1d` is not one of the zones (us-east-1a, us-east-1b)"
    );
}

#[test]
fn a_duplicate_address_is_an_error() {
    let text = r#"
cluster = "main"
local_zone = "a"

[zones]
a = ["10.0.1.1:11211", "10.0.1.2:11211", "10.0.1.1:11211"]
"#;
    let err = Topology::from_toml_str(text).unwrap_err();
    assert!(
        matches!(&err, TopologyError::DuplicateNode { zone, address }
            if zone == "a" && address == "10.0.1.1:11211"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "zone `a` lists node `10.0.1.1:11211` twice");
}

#[test]
fn the_same_address_in_two_zones_is_allowed() {
    // Only within a zone would a repeat skew the ring; across zones it is an operator's
    // choice (a laptop cluster, say), not a mistake the topology can tell.
    Topology::builder("main", "a")
        .zone("a", ["127.0.0.1:11211"])
        .zone("b", ["127.0.0.1:11211"])
        .build()
        .unwrap();
}

#[test]
fn builder_errors_name_the_problem() {
    let err = Topology::builder(" ", "a").zone("a", ["h:1"]).build();
    assert!(matches!(err, Err(TopologyError::EmptyClusterName)));

    let err = Topology::builder("main", "a").build();
    assert!(matches!(err, Err(TopologyError::NoZones)));

    let err = Topology::builder("main", "a")
        .zone("a", ["h:1"])
        .zone("", ["h:2"])
        .build();
    assert!(matches!(err, Err(TopologyError::EmptyZoneName)));

    let err = Topology::builder("main", "a")
        .zone("a", ["h:1"])
        .zone("a", ["h:2"])
        .build();
    assert!(matches!(err, Err(TopologyError::DuplicateZone { zone }) if zone == "a"));

    let err = Topology::builder("main", "a")
        .zone("a", ["h:1"])
        .zone("b", Vec::<String>::new())
        .build();
    assert!(matches!(err, Err(TopologyError::EmptyZone { zone }) if zone == "b"));

    let err = Topology::builder("main", "a").zone("a", ["h:1"]).vnodes(0).build();
    assert!(matches!(err, Err(TopologyError::ZeroVnodes)));
}

#[test]
fn addresses_must_be_host_port() {
    for bad in [
        "",
        "10.0.0.1",
        ":11211",
        "10.0.0.1:",
        "h:0",
        "h:65536",
        "h:port",
        "h :1",
    ] {
        let err = Topology::builder("main", "a").zone("a", [bad]).build();
        assert!(
            matches!(&err, Err(TopologyError::InvalidAddress { zone, address })
                if zone == "a" && address == bad),
            "{bad:?}: {err:?}"
        );
    }
    for good in ["10.0.0.1:11211", "cache.internal:11211", "[::1]:11211", "localhost:1"] {
        Topology::builder("main", "a").zone("a", [good]).build().unwrap();
    }
}

#[test]
fn malformed_toml_is_a_config_error() {
    let missing = "cluster = \"main\"\n[zones]\na = [\"h:1\"]\n";
    assert!(matches!(
        Topology::from_toml_str(missing),
        Err(TopologyError::Config(_))
    ));
    let typo = format!("local-zone = \"a\"\n{THREE_ZONES}");
    assert!(matches!(Topology::from_toml_str(&typo), Err(TopologyError::Config(_))));
    assert!(matches!(
        Topology::from_toml_str("cluster = [unclosed"),
        Err(TopologyError::Config(_))
    ));
}

#[test]
fn deserializing_validates_and_serializing_round_trips() {
    let topology = Topology::from_toml_str(THREE_ZONES).unwrap();
    let json = serde_json::to_string(&topology).unwrap();
    assert_eq!(serde_json::from_str::<Topology>(&json).unwrap(), topology);

    let bad = json.replace("\"local_zone\":\"us-east-1b\"", "\"local_zone\":\"nowhere\"");
    let err = serde_json::from_str::<Topology>(&bad).unwrap_err();
    assert!(err.to_string().contains("local zone `nowhere`"), "{err}");
}
