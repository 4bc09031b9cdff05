//! Cold starts of Lambda binaries, measured as the Lambda service sees them:
//! each binary is started against a minimal Lambda Runtime API stub, and its
//! init ends when its first `GET /2018-06-01/runtime/invocation/next` arrives
//! (initialised, ready for an event). The stub then hands out the binary's
//! event and times the first invocation: from handing it out to the answer
//! (`.../response` or `.../error`). Its DynamoDB calls go to a stub that
//! answers at once with empty results (see `stub.rs`). Per binary: the
//! stripped file size, and the medians over the runs of the init time, the
//! peak RSS at init (`VmHWM` from `/proc/<pid>/status`), the first
//! invocation's time and the peak RSS after it. Runs are interleaved across
//! binaries so drift on a shared machine spreads evenly.
//!
//! ```text
//! coldstart-probe [--runs N] [--tsv FILE] BARE=PATH[@EVENT] SDK=PATH[@EVENT] NAME=PATH[@EVENT]...
//! ```
//! `@EVENT` is a JSON file with the first invocation's event (default `{}`).
//! `--tsv FILE` also writes the medians, one binary a line (name, size MB,
//! init ms, RSS at init MB, first invocation ms, peak RSS MB,
//! tab-separated), for `make bench`'s report.
//! The first binary is the bare `lambda_runtime` baseline, the second the
//! baseline with `aws_config` and a DynamoDB client; ratios are against both,
//! and the targets of issue 16 against the second.

mod stub;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use stub::Arrival;

/// Targets against the SDK baseline: binary size, init time, RSS at init
/// (issue 16; none is set for the first invocation).
const TARGETS: [f64; 3] = [1.0, 1.05, 1.1];
const WAIT: Duration = Duration::from_secs(20);

struct Binary {
    name: String,
    path: String,
    event: String,
    size: u64,
    /// Per run: init ms, RSS at init KB, first invocation ms, peak RSS KB.
    runs: Vec<[f64; 4]>,
    /// Answers that were errors or HTTP statuses of 500 and up.
    failed: usize,
    /// The last answer's HTTP status, for HTTP functions.
    status: Option<u32>,
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

/// Whether an answer failed: an `.../error` post, or an HTTP response of 5xx.
fn failed(ok: bool, body: &str) -> bool {
    let status = serde_status(body);
    !ok || status.is_some_and(|s| s >= 500)
}

/// `"statusCode": N` of an API Gateway response, without a JSON parser.
fn serde_status(body: &str) -> Option<u32> {
    let at = body.find("\"statusCode\"")? + "\"statusCode\"".len();
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One cold start: exec → the first next-invocation request → the answer to
/// the event handed out then.
fn cold_start(
    b: &Binary,
    api: &str,
    dynamodb: &str,
    arrivals: &mpsc::Receiver<Arrival>,
) -> Result<([f64; 4], bool, Option<u32>), String> {
    // Anything left from an earlier process (its second `next`) is stale.
    while arrivals.try_recv().is_ok() {}
    let name = b.name.as_str();
    let started = std::time::Instant::now();
    let mut child = Command::new(&b.path)
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
        .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb)
        .env("SPENDGUARD_TABLE", "spendguard")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", b.path))?;
    let pid = child.id();
    let outcome = (|| {
        let (ready, stream) = match arrivals.recv_timeout(WAIT) {
            Ok(Arrival::Next(at, stream)) => (at, stream),
            Ok(Arrival::Answer(..)) => return Err(format!("{name}: an answer before any event")),
            Err(_) => return Err(format!("{name}: no next-invocation request within 20 s")),
        };
        let rss_init = peak_rss_kb(pid).ok_or("no /proc status")?;
        let init_ms = ready.duration_since(started).as_secs_f64() * 1000.0;
        let handed = std::time::Instant::now();
        if !stub::hand_out(stream, name, &b.event) {
            return Err(format!("{name}: the event could not be handed out"));
        }
        let (answered, ok, body) = match arrivals.recv_timeout(WAIT) {
            Ok(Arrival::Answer(at, ok, body)) => (at, ok, body),
            Ok(Arrival::Next(..)) => {
                return Err(format!("{name}: asked for another event before answering"))
            }
            Err(_) => return Err(format!("{name}: no answer within 20 s")),
        };
        let peak = peak_rss_kb(pid).ok_or("no /proc status")?;
        let first_ms = answered.duration_since(handed).as_secs_f64() * 1000.0;
        // Its next `next` comes right after the answer: taken here, it cannot
        // reach the following run as that one's first.
        let _ = arrivals.recv_timeout(Duration::from_secs(2));
        if failed(ok, &body) {
            eprintln!("{name}: the first invocation failed: {body}");
        }
        Ok((
            [init_ms, rss_init, first_ms, peak],
            failed(ok, &body),
            serde_status(&body),
        ))
    })();
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
    let mut tsv = None;
    if let Some(i) = args.iter().position(|a| a == "--tsv") {
        tsv = Some(args.get(i + 1).expect("--tsv FILE").clone());
        args.drain(i..=i + 1);
    }
    let mut binaries: Vec<Binary> = args
        .iter()
        .map(|arg| {
            let (name, rest) = arg.split_once('=').expect("NAME=PATH[@EVENT]");
            let (path, event) = match rest.split_once('@') {
                Some((path, file)) => (
                    path,
                    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}")),
                ),
                None => (rest, "{}".to_string()),
            };
            let size = std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .len();
            Binary {
                name: name.into(),
                path: path.into(),
                event,
                size,
                runs: Vec::new(),
                failed: 0,
                status: None,
            }
        })
        .collect();
    assert!(
        binaries.len() >= 2,
        "usage: coldstart-probe [--runs N] [--tsv FILE] BARE=PATH[@EVENT] SDK=PATH[@EVENT] NAME=PATH[@EVENT]..."
    );

    let (api, arrivals) = stub::runtime_api();
    let dynamodb = stub::dynamodb();
    for _ in 0..runs {
        for b in binaries.iter_mut() {
            match cold_start(b, &api, &dynamodb, &arrivals) {
                Ok((run, failed, status)) => {
                    b.runs.push(run);
                    b.status = status;
                    b.failed += usize::from(failed);
                }
                Err(e) => eprintln!("{e}"),
            }
        }
    }

    // size MB, init ms, RSS at init MB, first invocation ms, peak RSS MB.
    let stats: Vec<[f64; 5]> = binaries
        .iter()
        .map(|b| {
            let m = |i: usize| median(&b.runs.iter().map(|r| r[i]).collect::<Vec<_>>());
            [
                b.size as f64 / 1e6,
                m(0),
                m(1) / 1024.0,
                m(2),
                m(3) / 1024.0,
            ]
        })
        .collect();
    let (bare, sdk) = (stats[0], stats[1]);
    println!(
        "cold starts: median of {runs}; ratios to {} (bare) and {} (SDK); targets vs SDK: size <= {:.2}x, init <= {:.2}x, RSS at init <= {:.2}x",
        binaries[0].name, binaries[1].name, TARGETS[0], TARGETS[1], TARGETS[2]
    );
    println!(
        "{:<14} {:>8} {:>6} {:>8} {:>6} {:>7} {:>6} {:>9} {:>6} {:>8} {:>6}  targets",
        "binary",
        "size MB",
        "xsdk",
        "init ms",
        "xsdk",
        "RSS MB",
        "xsdk",
        "1st inv ms",
        "xsdk",
        "peak MB",
        "xsdk"
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
        let mut failed = match b.failed {
            0 => String::new(),
            n => format!("; {n} first invocations failed"),
        };
        if let Some(status) = b.status {
            failed.push_str(&format!("; answered {status}"));
        }
        println!(
            "{:<14} {:>8.2} {:>6.2} {:>8.2} {:>6.2} {:>7.2} {:>6.2} {:>9.2} {:>6.2} {:>8.2} {:>6.2}  {}{failed}",
            b.name,
            s[0],
            s[0] / sdk[0],
            s[1],
            s[1] / sdk[1],
            s[2],
            s[2] / sdk[2],
            s[3],
            s[3] / sdk[3],
            s[4],
            s[4] / sdk[4],
            verdict.join(", ")
        );
    }
    println!(
        "(bare {}: {:.2} MB, init {:.2} ms, RSS {:.2} MB, first invocation {:.2} ms, peak {:.2} MB)",
        binaries[0].name, bare[0], bare[1], bare[2], bare[3], bare[4]
    );
    if let Some(path) = tsv {
        let lines: String = binaries
            .iter()
            .zip(&stats)
            .map(|(b, s)| {
                let cols: Vec<String> = s.iter().map(|v| format!("{v:.3}")).collect();
                format!("{}\t{}\t{}\n", b.name, cols.join("\t"), b.failed)
            })
            .collect();
        std::fs::write(&path, lines).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}
