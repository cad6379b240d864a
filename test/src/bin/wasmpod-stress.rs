//! `wasmpod-stress [--cycles N] [--parallel P] [--soak SECONDS]`: the stress run of
//! `make stress` on the private containerd in `WASMPOD_CONTAINERD_ADDRESS` (started with the
//! CRI plugin by `test/lib/containerd.sh`; see `test/stress.sh`).
//!
//! 1. A warm-up round of every workload (the compile cache fills, the anchor pod starts).
//! 2. The node counted; N cycles of the mix at P ([`wasmpod_e2e::stress`]); counted again:
//!    any failed cycle or any count that grew fails the run.
//! 3. The baselines, same N and P: `ctr run --rm` of the Wasm hello alone, and of busybox
//!    `echo` under runc; tasks/s of each and the ratio.
//! 4. With `--soak`, the mix runs for that long while the anchor pod's shim is sampled every
//!    10 s; its RSS or fd count growing fails the run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use wasmpod_e2e::cri::Cri;
use wasmpod_e2e::leaks::{self, NodeSnapshot};
use wasmpod_e2e::stress::{self, Anchor, Sample, Workload};

struct Args {
    cycles: usize,
    parallel: usize,
    soak: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        cycles: 1000,
        parallel: 10,
        soak: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--cycles" => args.cycles = number as usize,
            "--parallel" => args.parallel = number.max(1) as usize,
            "--soak" => args.soak = (number > 0).then(|| Duration::from_secs(number)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wasmpod-stress: {e}\nusage: wasmpod-stress [--cycles N] [--parallel P] [--soak SECONDS]");
            return ExitCode::from(2);
        }
    };
    stress::import_images();
    let mut cri = Cri::connect();
    let anchor = Anchor::start(&mut cri);
    let mut failed = false;

    let warm = stress::run_loop(
        &Workload::MIX,
        Workload::MIX.len(),
        1,
        None,
        Some(&anchor.pod),
    );
    if !warm.failures.is_empty() {
        println!("== warm-up\n{warm}");
        failed = true;
    }
    let before = stress::quiet_snapshot(Some(anchor.shim));

    println!("== mix: {} cycles at P={}", args.cycles, args.parallel);
    let mix = stress::run_loop(
        &Workload::MIX,
        args.cycles,
        args.parallel,
        None,
        Some(&anchor.pod),
    );
    print!("{mix}");
    failed |= !mix.failures.is_empty();
    failed |= !report_leaks(&before, anchor.shim);

    if let Some(duration) = args.soak {
        println!(
            "== soak: the mix at P={} for {} s",
            args.parallel,
            duration.as_secs()
        );
        let (report, samples) = soak(duration, args.parallel, &anchor);
        print!("{report}");
        failed |= !report.failures.is_empty();
        for (t, rss, fds) in &samples {
            println!("  t={t:>6.0} s  shim RSS {rss:>7} KiB  fds {fds}");
        }
        match stress::growth(&samples) {
            None => println!("soak: shim RSS and fds flat"),
            Some(grown) => {
                println!("soak: FAILED: {grown}");
                failed = true;
            }
        }
        failed |= !report_leaks(&before, anchor.shim);
    }

    println!(
        "== baselines: {} cycles at P={}",
        args.cycles, args.parallel
    );
    let hello = stress::run_loop(
        &[Workload::WasmHello],
        args.cycles,
        args.parallel,
        None,
        None,
    );
    print!("wasmpod hello: {hello}");
    let runc = stress::run_loop(
        &[Workload::RuncEcho],
        args.cycles,
        args.parallel,
        None,
        None,
    );
    print!("runc echo:     {runc}");
    failed |= !hello.failures.is_empty() || !runc.failures.is_empty();
    println!(
        "tasks/s at P={}: mix {:.2}, wasmpod hello {:.2}, runc echo {:.2}; \
         wasmpod hello / runc = {:.2}x (target >= 2x)",
        args.parallel,
        mix.tasks_per_sec(),
        hello.tasks_per_sec(),
        runc.tasks_per_sec(),
        hello.tasks_per_sec() / runc.tasks_per_sec().max(1e-9)
    );
    failed |= !report_leaks(&before, anchor.shim);
    anchor.stop(&mut cri);
    if failed {
        println!("stress: FAILED");
        ExitCode::FAILURE
    } else {
        println!("stress: passed (no failed cycle, no leak)");
        ExitCode::SUCCESS
    }
}

/// Counts the node after the cycles settle and prints before and after; false on a leak.
fn report_leaks(before: &NodeSnapshot, shim: i32) -> bool {
    let (after, grown) = stress::settle(before, Some(shim));
    println!("  before: {before}\n  after:  {after}");
    if grown.is_empty() {
        println!("  no leak");
        true
    } else {
        println!("  LEAKED: {}", grown.join(", "));
        false
    }
}

/// The mix for `duration` at `parallel`, sampling the anchor shim every 10 s meanwhile.
fn soak(duration: Duration, parallel: usize, anchor: &Anchor) -> (stress::LoopReport, Vec<Sample>) {
    let started = Instant::now();
    let until = started + duration;
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while Instant::now() < until {
                samples.push((
                    started.elapsed().as_secs_f64(),
                    leaks::rss_kb(anchor.shim),
                    leaks::fd_count(anchor.shim),
                ));
                std::thread::sleep(
                    Duration::from_secs(10).min(until.saturating_duration_since(Instant::now())),
                );
            }
            samples
        });
        let report = stress::run_loop(&Workload::MIX, 0, parallel, Some(until), Some(&anchor.pod));
        (report, sampler.join().expect("sampler"))
    })
}
