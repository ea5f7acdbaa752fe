//! `dth-latency-proxy`: the testkit's [`FaultProxy`] as a command, adding a fixed round-trip time to
//! every request in front of one S3 endpoint, for the shell benchmarks (`bench/s3.sh` puts one in
//! front of each s3s-fs to measure far endpoints). It prints its URL on stdout and serves until killed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use dth_testkit::{FaultProxy, Faults};

const USAGE: &str = "usage: dth-latency-proxy [--listen 127.0.0.1:PORT] --upstream http://HOST:PORT --latency-ms N   (adds N ms of round trip to every request; prints its URL)";

/// What the command line asks for.
struct Options {
    listen: SocketAddr,
    upstream: String,
    latency: Duration,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut upstream = None;
    let mut latency = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|e| format!("--listen {v:?}: {e}"))?;
            }
            "--upstream" => upstream = Some(value()?.clone()),
            "--latency-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().map_err(|e| format!("--latency-ms {v:?}: {e}"))?;
                latency = Some(Duration::from_millis(ms));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        listen,
        upstream: upstream.ok_or("--upstream is required")?,
        latency: latency.ok_or("--latency-ms is required")?,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(why) => {
            eprintln!("dth-latency-proxy: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dth-latency-proxy: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let faults = Faults {
            latency: options.latency,
            ..Faults::default()
        };
        match FaultProxy::start_on(options.listen, &options.upstream, faults).await {
            Ok(proxy) => {
                println!("{}", proxy.endpoint_url());
                std::future::pending::<()>().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dth-latency-proxy: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_are_read() {
        let o = parse(&args(
            "--listen 127.0.0.1:9000 --upstream http://127.0.0.1:9001 --latency-ms 150",
        ))
        .unwrap();
        assert_eq!(o.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(o.upstream, "http://127.0.0.1:9001");
        assert_eq!(o.latency, Duration::from_millis(150));
        let o = parse(&args("--upstream http://127.0.0.1:9001 --latency-ms 0")).unwrap();
        assert_eq!(o.listen.port(), 0);
    }

    #[test]
    fn missing_and_unknown_flags_are_refused() {
        assert!(parse(&args("--latency-ms 50")).is_err());
        assert!(parse(&args("--upstream http://127.0.0.1:1")).is_err());
        assert!(parse(&args("--upstream http://127.0.0.1:1 --latency-ms x")).is_err());
        assert!(parse(&args("--upstream http://127.0.0.1:1 --latency-ms 5 --x")).is_err());
        assert!(parse(&args("--upstream")).is_err());
    }
}
