//! Prints the comparison table: median ns per pick of each subject, measured
//! interleaved (one batch of each subject per round), so that a change of
//! machine load during the run moves every subject of a row alike.
//!
//! Usage: `cargo run --release -- [FILTER] [--rounds N] [--ms M]`

use std::time::{Duration, Instant};

use upstream_compare::{rows, Batch};

fn main() {
    let mut filter = String::new();
    let mut rounds = 21usize;
    let mut batch_ms = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--ms" => batch_ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(batch_ms),
            other => filter = other.to_string(),
        }
    }
    let target = Duration::from_millis(batch_ms);

    println!(
        "| policy | n | Pool::pick | Reader::pick | Reader::lookup | pingora select() | \
         select ÷ Pool::pick | select ÷ Reader::pick | select ÷ lookup | Continuum::node | \
         node ÷ lookup | node ÷ bare | bare | Reader::pick ÷ bare | lookup ÷ bare |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mut row in rows(&filter) {
        let iters: Vec<u64> = row
            .subjects
            .iter_mut()
            .map(|s| calibrate(&mut s.batch, target))
            .collect();
        let mut samples = vec![Vec::with_capacity(rounds); row.subjects.len()];
        for _ in 0..rounds {
            for (k, s) in row.subjects.iter_mut().enumerate() {
                let start = Instant::now();
                (s.batch)(iters[k]);
                samples[k].push(start.elapsed().as_secs_f64() * 1e9 / iters[k] as f64);
            }
        }
        let median = |name: &str| {
            let k = row.subjects.iter().position(|s| s.name == name)?;
            let mut s = samples[k].clone();
            s.sort_by(f64::total_cmp);
            Some(s[s.len() / 2])
        };
        let pool = median("Pool::pick");
        let reader = median("Reader::pick");
        let lookup = median("Reader::lookup");
        let select = median("pingora select()");
        let node = median("Continuum::node");
        let bare = median("bare");
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.policy,
            row.n,
            ns(pool),
            ns(reader),
            ns(lookup),
            ns(select),
            ratio(select, pool),
            ratio(select, reader),
            ratio(select, lookup),
            ns(node),
            ratio(node, lookup),
            ratio(node, bare),
            ns(bare),
            ratio(reader, bare),
            ratio(lookup, bare),
        );
    }
}

fn ns(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.1}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.1}×", a / b),
        _ => "–".to_string(),
    }
}

/// Iterations that take about `target`, after a warm-up.
fn calibrate(batch: &mut Batch, target: Duration) -> u64 {
    let mut iters = 64u64;
    loop {
        let start = Instant::now();
        batch(iters);
        let spent = start.elapsed();
        if spent >= target / 2 || iters >= 1 << 30 {
            let per = spent.as_secs_f64() / iters as f64;
            return ((target.as_secs_f64() / per) as u64).max(1);
        }
        iters *= 2;
    }
}
