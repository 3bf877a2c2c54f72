//! The summary lines a benchmark prints for `scripts/bench`, which collects them into the
//! Performance table (docs/performance.md): one `BENCH-ROW|` line per row of the table (its four columns:
//! what, figure, target, command) and one `BENCH-SKIP|` line when the benchmark cannot run
//! here (the engine it needs is missing), so that a benchmark that did not run is reported
//! with the reason, never silently left out. Everything else a benchmark prints is for people.
//!
//! Shared by the agent's and the plugin host's benchmarks (`#[path]`-included by the latter).

/// Prints one row of the Performance table. `target` and `command` may be empty (the lines
/// under a figure that give its baseline have neither).
///
/// # Panics
///
/// When a cell holds a `|` or a line break, which would break the Markdown table.
pub fn row(what: &str, figure: &str, target: &str, command: &str) {
    for cell in [what, figure, target, command] {
        assert!(!cell.contains(['|', '\n']), "a table cell with '|' or a line break: {cell:?}");
    }
    println!("BENCH-ROW| {what} | {figure} | {target} | {command}");
}

/// Reports that `bench` did not run, and why (say, which service is missing and how to get it).
pub fn skip(bench: &str, why: &str) {
    println!("BENCH-SKIP| {bench} | {}", why.replace(['|', '\n'], " "));
}

/// The command cell of a benchmark of `package`.
pub fn command(package: &str, bench: &str) -> String {
    format!("`cargo bench -p {package} --bench {bench}`")
}

/// The `p`th percentile of `samples`, nearest rank (`p` in 0–100).
///
/// # Panics
///
/// When there are no samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    assert!(!samples.is_empty(), "a percentile of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `p50 X ms, p99 Y ms` of samples in milliseconds.
pub fn p50_p99_ms(samples: &[f64]) -> String {
    format!("p50 {:.1} ms, p99 {:.1} ms", percentile(samples, 50.0), percentile(samples, 99.0))
}
