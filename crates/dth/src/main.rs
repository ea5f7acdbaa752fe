//! `dth`, the Data Transfer Hub command line: wires the engine crates to flags, progress and output.
//! No transfer logic lives here.

mod cli;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc returns the 16 MiB part buffers to the system as they are freed; glibc's allocator kept
/// ~120 MiB of fragments above the `--max-buffer` budget in a 3 GiB copy.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Turns transparent huge pages off for this process. Where the kernel backs every anonymous mapping
/// with them (`always`), each part buffer mimalloc takes back from the system is zeroed 2 MiB at a
/// time: a third of the client's CPU in the far large-object bench (`clear_page_erms` in `perf`), and
/// 15-20 % more peak RSS. mimalloc's own switch (`MIMALLOC_ALLOW_THP=0`) is read before `main`.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process; it reads no memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Raises the soft limit on open files to the hard one: far endpoints need hundreds of connections
/// per side at once (see `dth_s3::adapt`), more than the common soft limit of 1,024 allows.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
