//! The round trips every accepted configuration must make, shared by the
//! `nginx_config` and `config_files` targets.

use upstream::config::{from_str_with_format, parse_nginx, Format, UpstreamConfig};
use upstream::policy::AnyPolicy;
use upstream::{Key, Pool};

/// Anything accepted writes back as an nginx block that parses to the same
/// value and renders to the same text; the same holds through JSON and
/// TOML; and a pool built from it (or refusing it) does not panic.
pub fn check(cfg: &UpstreamConfig) {
    let block = cfg.to_nginx();
    let again =
        parse_nginx(&block).unwrap_or_else(|e| panic!("rendered block refused: {e}\n{block}"));
    assert_eq!(&again, cfg, "nginx round trip\n{block}");
    assert_eq!(again.to_nginx(), block, "rendering is not stable");

    let json = serde_json::to_string(cfg).expect("serializes as JSON");
    let from_json = from_str_with_format(&json, Format::Json)
        .unwrap_or_else(|e| panic!("JSON written, then refused: {e}\n{json}"));
    assert_eq!(&from_json, cfg, "JSON round trip\n{json}");

    let toml = toml::to_string(cfg).expect("serializes as TOML");
    let from_toml = from_str_with_format(&toml, Format::Toml)
        .unwrap_or_else(|e| panic!("TOML written, then refused: {e}\n{toml}"));
    assert_eq!(&from_toml, cfg, "TOML round trip\n{toml}");

    if let Ok(pool) = Pool::<AnyPolicy>::from_config(cfg) {
        for key in [Key::None, Key::Bytes(b"/"), Key::Hash(7)] {
            drop(pool.pick(key));
        }
        pool.reload(cfg)
            .expect("a config the pool took once, it takes again");
    }
}
