//! Cold starts of Lambda binaries, measured as the Lambda service sees them:
//! each binary is started against a minimal Lambda Runtime API stub, and a run
//! ends when its first `GET /2018-06-01/runtime/invocation/next` arrives
//! (initialisation done, ready for an event). Per binary: the stripped file
//! size, and the median over the runs of the time from exec to that request
//! and of the peak RSS at that moment (`VmHWM` from `/proc/<pid>/status`).
//! Runs are interleaved across binaries so drift on a shared machine spreads
//! evenly.
//!
//! ```text
//! coldstart-probe [--runs N] BARE=PATH SDK=PATH NAME=PATH...
//! ```
//! The first binary is the bare `lambda_runtime` baseline, the second the
//! baseline with `aws_config` and a DynamoDB client; ratios are against both,
//! and the targets of issue 16 against the second.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NEXT_INVOCATION: &str = "GET /2018-06-01/runtime/invocation/next";
/// Targets against the SDK baseline: binary size, init time, RSS at init.
const TARGETS: [f64; 3] = [1.0, 1.05, 1.1];

struct Binary {
    name: String,
    path: String,
    size: u64,
    init_ms: Vec<f64>,
    rss_kb: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn peak_rss_kb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One cold start: exec → the first next-invocation request.
fn cold_start(
    path: &str,
    name: &str,
    api: &str,
    arrivals: &mpsc::Receiver<(Instant, TcpStream)>,
) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let mut child = Command::new(path)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "probe")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "probe")
        .env("AWS_SECRET_ACCESS_KEY", "probe")
        .env("AWS_SESSION_TOKEN", "probe")
        .env("SPENDGUARD_TABLE", "spendguard")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{path}: {e}"))?;
    let pid = child.id();
    let outcome = match arrivals.recv_timeout(Duration::from_secs(20)) {
        Ok((at, stream)) => {
            let rss = peak_rss_kb(pid).ok_or("no /proc status");
            let init_ms = at.duration_since(started).as_secs_f64() * 1000.0;
            drop(stream);
            rss.map(|rss| (init_ms, rss)).map_err(str::to_string)
        }
        Err(_) => Err(format!("{name}: no next-invocation request within 20 s")),
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 21;
    if let Some(i) = args.iter().position(|a| a == "--runs") {
        runs = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--runs N");
        args.drain(i..=i + 1);
    }
    let mut binaries: Vec<Binary> = args
        .iter()
        .map(|arg| {
            let (name, path) = arg.split_once('=').expect("NAME=PATH");
            let size = std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .len();
            Binary {
                name: name.into(),
                path: path.into(),
                size,
                init_ms: Vec::new(),
                rss_kb: Vec::new(),
            }
        })
        .collect();
    assert!(
        binaries.len() >= 2,
        "usage: coldstart-probe [--runs N] BARE=PATH SDK=PATH NAME=PATH..."
    );

    let listener = TcpListener::bind("127.0.0.1:0").expect("stub listens");
    let api = listener.local_addr().expect("address").to_string();
    let (tx, arrivals) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(stream);
            if reader.read_line(&mut line).is_ok() && line.starts_with(NEXT_INVOCATION) {
                let _ = tx.send((Instant::now(), reader.into_inner()));
            }
        }
    });

    for _ in 0..runs {
        for b in binaries.iter_mut() {
            match cold_start(&b.path, &b.name, &api, &arrivals) {
                Ok((init, rss)) => {
                    b.init_ms.push(init);
                    b.rss_kb.push(rss);
                }
                Err(e) => eprintln!("{e}"),
            }
        }
    }

    let stats: Vec<[f64; 3]> = binaries
        .iter()
        .map(|b| {
            [
                b.size as f64 / 1e6,
                median(&b.init_ms),
                median(&b.rss_kb) / 1024.0,
            ]
        })
        .collect();
    let (bare, sdk) = (stats[0], stats[1]);
    println!(
        "cold starts: median of {runs}; ratios to {} (bare) and {} (SDK); targets vs SDK: size <= {:.2}x, init <= {:.2}x, RSS <= {:.2}x",
        binaries[0].name, binaries[1].name, TARGETS[0], TARGETS[1], TARGETS[2]
    );
    println!(
        "{:<14} {:>8} {:>6} {:>6} {:>8} {:>6} {:>6} {:>7} {:>6} {:>6}  targets",
        "binary", "size MB", "xbare", "xsdk", "init ms", "xbare", "xsdk", "RSS MB", "xbare", "xsdk"
    );
    for (b, s) in binaries.iter().zip(&stats) {
        let verdict: Vec<String> = ["size", "init", "RSS"]
            .iter()
            .enumerate()
            .map(|(i, what)| {
                let ratio = s[i] / sdk[i];
                if ratio <= TARGETS[i] {
                    format!("{what} ok")
                } else {
                    format!(
                        "{what} misses by {:.0}%",
                        (ratio / TARGETS[i] - 1.0) * 100.0
                    )
                }
            })
            .collect();
        println!(
            "{:<14} {:>8.2} {:>6.2} {:>6.2} {:>8.2} {:>6.2} {:>6.2} {:>7.2} {:>6.2} {:>6.2}  {}",
            b.name,
            s[0],
            s[0] / bare[0],
            s[0] / sdk[0],
            s[1],
            s[1] / bare[1],
            s[1] / sdk[1],
            s[2],
            s[2] / bare[2],
            s[2] / sdk[2],
            verdict.join(", ")
        );
    }
}
