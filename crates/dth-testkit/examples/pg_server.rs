//! A throwaway PostgreSQL server for benchmarks: starts one like the tests do ([`PgServer::start`]),
//! prints `URL <database url>` on stdout, and serves until stdin closes or the process is killed (the
//! server dies with it).

use std::io::{BufRead, Write};

use dth_testkit::PgServer;

fn main() {
    let pg = PgServer::start();
    let url = pg.create_database("bench");
    println!("URL {url}");
    let _ = std::io::stdout().flush();
    // Wait for stdin to close (or the process to be killed).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(pg);
}
