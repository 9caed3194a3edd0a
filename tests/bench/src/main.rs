//! natter-bench: runs natter's benchmark suite (issues #6 and #16) side by side with the
//! uWebSockets peer and raw sled in the same run, and prints the table (natter, peer,
//! natter/peer), then issue #16's goal table with each goal met or not, and writes both as JSON.
//! `tests/bench/run` builds everything, installs the peer and calls this.

mod chat;
mod client;
mod provision;
mod pubsub;
mod rawws;
mod report;
mod scenarios;
mod servers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde_json::json;

/// natter's benchmarks beside uWebSockets (socketify) and raw sled.
#[derive(Debug, Parser)]
#[command(name = "natter-bench")]
struct Args {
    /// Run only this scenario (repeatable): fanout, rooms, chat-rooms, idle, idle-100k, durable,
    /// durable-users, busy-room, startup, logins, storm, resume-storm.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Seconds-long sizes (CI): proves the harness works, measures nothing worth quoting.
    #[arg(long)]
    smoke: bool,
    /// Runs of each scenario; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The natter binary to measure (a release build for real figures).
    #[arg(long, default_value = "target/release/natter")]
    natter: PathBuf,
    /// Python of the venv that has socketify; without it (or with --no-peer) no peer runs.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The peer server script.
    #[arg(long, default_value = "tests/bench/peer_uws.py")]
    peer_script: PathBuf,
    /// Measure natter alone.
    #[arg(long)]
    no_peer: bool,
    /// uWS's max_backpressure in the peer, bytes per socket (uWS's default).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    peer_max_backpressure: u64,
    /// Connections of idle-100k (default 100000; smoke 2000).
    #[arg(long, value_name = "N")]
    many_connections: Option<usize>,
    /// Clients of resume-storm (default 10000; smoke 200).
    #[arg(long, value_name = "N")]
    resume_clients: Option<usize>,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("natter-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(suite(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// What machine this ran on.
fn machine() -> serde_json::Value {
    let cpuinfo = read_trimmed("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu_model": model,
        "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
        "memory": read_trimmed("/proc/meminfo").lines().next().unwrap_or("").to_owned(),
    })
}

async fn suite(args: Args) -> anyhow::Result<()> {
    let selected: Vec<String> = if args.scenarios.is_empty() {
        scenarios::ALL.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.scenarios.clone()
    };
    for name in &selected {
        if !scenarios::ALL.contains(&name.as_str()) {
            anyhow::bail!(
                "unknown scenario {name:?} (known: {})",
                scenarios::ALL.join(", ")
            );
        }
    }
    let mut settings = if args.smoke {
        scenarios::Settings::smoke()
    } else {
        scenarios::Settings::full()
    };
    if let Some(n) = args.many_connections {
        settings.many.connections = n;
    }
    if let Some(n) = args.resume_clients {
        settings.resume.clients = n;
    }
    let peer = match (&args.python, args.no_peer) {
        (Some(python), false) => Some(servers::Peer {
            python: python.clone(),
            script: args.peer_script.clone(),
            max_backpressure: args.peer_max_backpressure,
        }),
        _ => None,
    };
    let peer_description = match &peer {
        Some(p) => format!(
            "uWS (socketify 0.0.31, tests/bench/peer_uws.py), libuv's own loop, max_backpressure {} B",
            p.max_backpressure
        ),
        None => "none".to_owned(),
    };
    let programs = servers::Programs {
        natter: args.natter.clone(),
        peer,
    };
    let runs = if args.smoke { 1 } else { args.runs.max(1) };
    let load_start = read_trimmed("/proc/loadavg");
    let started = Instant::now();
    let mut all_runs = Vec::new();
    for run in 1..=runs {
        let mut figures = Vec::new();
        for name in &selected {
            eprintln!("natter-bench: run {run}/{runs}: {name}");
            let scenario_started = Instant::now();
            let result = scenarios::run(name, &settings, &programs).await;
            match result {
                Ok(mut found) => figures.append(&mut found),
                Err(e) => anyhow::bail!("scenario {name} failed: {e:#}"),
            }
            eprintln!(
                "natter-bench: {name} took {:.1} s (load {})",
                scenario_started.elapsed().as_secs_f64(),
                read_trimmed("/proc/loadavg")
            );
        }
        all_runs.push(figures);
    }
    let load_end = read_trimmed("/proc/loadavg");
    let rows = report::medians(&all_runs);
    let machine = machine();
    println!(
        "natter-bench: {} run(s){}, median shown; machine: {} x {} , kernel {}; load average at start {}, at end {}; peer: {}",
        runs,
        if args.smoke { " (smoke sizes)" } else { "" },
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        load_start,
        load_end,
        peer_description,
    );
    println!("{}", report::table(&rows));
    println!();
    println!(
        "natter-bench: issue #16's goals{}:",
        if args.smoke {
            " (smoke sizes: not the goals' sizes)"
        } else {
            ""
        }
    );
    println!("{}", report::goals_table(&rows));
    let document = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "smoke": args.smoke,
        "runs": runs,
        "scenarios": selected,
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "seconds": started.elapsed().as_secs_f64(),
        "peer": peer_description,
        "rows": rows,
        "per_run": all_runs,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&document)?)?;
    eprintln!("natter-bench: wrote {}", args.out.display());
    Ok(())
}
