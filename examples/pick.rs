//! Which backend would this client hit?
//!
//! ```sh
//! cargo run --release --example pick -- upstream.conf < keys.txt
//! ```
//!
//! FILE is an nginx `upstream` block, or the same pool as TOML or JSON (told
//! apart by the extension). Each line of standard input is one request: a
//! client address for `ip_hash`, a key for `hash`, and for the other methods
//! the line's text is ignored. Each request completes (its pick is released
//! and reported as a success) before the next line is read. For each line
//! the chosen server is printed exactly as written in FILE, or `none`.

use std::io::{self, BufRead, BufWriter, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use upstream::config::{load_file, Method};
use upstream::{Key, Pool};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: pick FILE   (keys on standard input, one per line)");
        return ExitCode::from(2);
    };
    let config = match load_file(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pick: {path}: {e}");
            return ExitCode::from(1);
        }
    };
    let pool = match Pool::from_config(&config) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("pick: {path}: {e}");
            return ExitCode::from(1);
        }
    };
    let method = config.method();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let key = match method {
            Method::IpHash => line.trim().parse::<IpAddr>().map_or(Key::None, Key::Ip),
            Method::Hash { .. } => Key::Bytes(line.as_bytes()),
            _ => Key::None,
        };
        let answer = match pool.pick(key) {
            Some(pick) => {
                let id = pick.id().to_string();
                pick.success();
                id
            }
            None => "none".to_string(),
        };
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}
