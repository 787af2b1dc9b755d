//! The supervisor of one attempt: `git-gatos __run-job` (ADR 0021).
//!
//! The worker starts one supervisor per attempt, writes it a [`RunSpec`] line on its
//! standard input and keeps that pipe open; the supervisor's standard output and error
//! are the job's. The supervisor
//! 1. asks for a signal when the worker's thread dies and checks the worker is still its
//!    parent (a worker killed before that point is caught by the check),
//! 2. becomes a child subreaper, so everything the job starts — also what escapes with
//!    `setsid` or a double fork — stays its descendant,
//! 3. confines itself with the sandbox ([`super::sandbox`]), which the job inherits,
//! 4. resolves the command against the job's `PATH` and starts it with exactly the
//!    environment the worker built,
//! 5. obeys the worker's requests on standard input (`term`: TERM to the process group the
//!    job shares with the supervisor, which ignores it; `kill`: KILL to every descendant)
//!    and treats the end of standard input or the parent-death signal as `kill` (the worker
//!    is gone),
//! 6. when the job ends, kills whatever it left behind and exits as the job did: the same
//!    exit code, or the same signal.
//!
//! Exit codes of its own, with a `gatos:` line on the job's standard error: 125 (the
//! supervisor could not set up: a bad spec, a sandbox that is required and unavailable, the
//! worker already gone), 126 (the command could not be started), 127 (not found).

use std::io::{BufRead as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use super::sandbox;

/// The hidden subcommand the worker runs.
pub const SUBCOMMAND: &str = "__run-job";

/// The largest spec line accepted (argv, environment and rules).
const MAX_SPEC: u64 = 16 * 1024 * 1024;

/// What to run and how (the first line on the supervisor's standard input).
#[derive(Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// The command and its arguments; the command is looked up on the job's `PATH`
    /// unless it contains a `/`.
    pub argv: Vec<String>,
    /// The whole environment of the job.
    pub env: Vec<(String, String)>,
    /// The job's working directory.
    pub cwd: PathBuf,
    /// The sandbox; `None` runs unconfined.
    pub sandbox: Option<sandbox::Rules>,
    /// The worker's process id: if the supervisor's parent is not this any more, the
    /// worker died before the parent-death signal was armed.
    pub worker_pid: u32,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSpec")
            .field("argv0", &self.argv.first())
            .field("cwd", &self.cwd)
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

enum Event {
    Term,
    Kill,
    Exited(rustix::process::WaitStatus),
}

fn say(msg: &str) {
    // The job's standard error is the supervisor's: the line lands in the job's log.
    let _ = writeln!(std::io::stderr(), "gatos: {msg}");
}

/// Runs the supervisor: reads the spec from standard input, runs the job, and returns the
/// exit code to exit with (a job killed by a signal makes the supervisor die of it).
pub fn main() -> i32 {
    let stdin = std::io::stdin();
    let mut line = String::new();
    // The lock is released at the end of the statement: the control thread takes it later
    // (what was read ahead stays in stdin's shared buffer).
    if let Err(e) = std::io::Read::take(stdin.lock(), MAX_SPEC).read_line(&mut line) {
        say(&format!("supervisor: reading the run spec: {e}"));
        return 125;
    }
    let spec: RunSpec = match serde_json::from_str(&line) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("supervisor: a bad run spec: {e}"));
            return 125;
        }
    };
    drop(line);
    // 0. Nothing the worker's parent left open reaches the job: every descriptor past
    // stdio is closed at the job's exec (a shell that started the worker with the key open
    // on fd 7 would hand it to every job otherwise; Landlock does not check descriptors
    // already open).
    close_fds::set_fds_cloexec_threadsafe(3, &[]);
    // 1. Die with the worker. The signal is armed first, then the parent checked, so a
    // worker that died in between is not missed.
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::HUP)) {
        say(&format!(
            "supervisor: cannot arm the parent-death signal: {e}"
        ));
        return 125;
    }
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get())
        != i32::try_from(spec.worker_pid).ok()
    {
        say("supervisor: the worker is gone; not starting the job");
        return 125;
    }
    // 2. Adopt every orphan the job leaves.
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        say(&format!("supervisor: cannot become a subreaper: {e}"));
        return 125;
    }
    // Signals before the sandbox: the handler thread is then outside it, which is fine
    // (it only forwards), and the job is started from this, the confined, thread.
    let (tx, rx) = mpsc::channel::<Event>();
    if let Err(e) = watch_signals(tx.clone()) {
        say(&format!("supervisor: {e}"));
        return 125;
    }
    // 3 and 4. Resolve the command, then confine and start the job from a thread of its
    // own: Landlock and capabilities apply to the calling thread and what it starts, so the
    // job lives in a sandbox domain nested inside nothing the supervisor's other threads
    // are in. With signals scoped to its domain, the job cannot kill its supervisor (and
    // so cannot stop it from ending what the job leaves behind).
    let Some(program) = spec.argv.first() else {
        say("supervisor: an empty command");
        return 125;
    };
    let path_var = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    // Only where the sandbox lets the job read: a copy of the command in a directory of
    // the job's PATH that the sandbox keeps closed is passed over, as a shell passes over
    // one it may not run, and the lookup goes on.
    let allowed = |candidate: &Path| {
        spec.sandbox.as_ref().is_none_or(|rules| {
            let c = std::fs::canonicalize(candidate).unwrap_or_else(|_| candidate.to_owned());
            rules
                .read
                .iter()
                .chain(&rules.write)
                .any(|d| c.starts_with(d))
        })
    };
    let resolved = match resolve(program, path_var, &spec.cwd, &allowed) {
        Ok(p) => p,
        Err(msg) => {
            say(&msg);
            return 127;
        }
    };
    let mut cmd = Command::new(&resolved);
    cmd.arg0(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // The job stays in the supervisor's process group (the worker made it one): a crashed
    // worker's successor finds what is left by that group (leftovers.rs).
    let started = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<std::process::Child, (i32, String)> {
                if let Some(rules) = &spec.sandbox {
                    // Without CAP_SYS_PTRACE a job cannot read the memory or environment
                    // of a non-dumpable worker, even as root; unprivileged users never had
                    // it, so a refusal to drop it is no loss.
                    let _ = rustix::thread::remove_capability_from_bounding_set(
                        rustix::thread::CapabilitySet::SYS_PTRACE,
                    );
                    if let Ok(mut caps) = rustix::thread::capabilities(None) {
                        let ptrace = rustix::thread::CapabilitySet::SYS_PTRACE;
                        caps.effective.remove(ptrace);
                        caps.permitted.remove(ptrace);
                        caps.inheritable.remove(ptrace);
                        let _ = rustix::thread::set_capabilities(None, caps);
                    }
                    rules.apply().map_err(|e| (125, e))?;
                    // What Landlock does not cover: another process's limits and priority.
                    if let Err(e) = super::sandbox::filter_process_calls() {
                        if rules.required {
                            return Err((125, e));
                        }
                        say(&format!("supervisor: {e}; the job runs without it"));
                    }
                }
                cmd.spawn().map_err(|e| {
                    let code = if e.kind() == std::io::ErrorKind::NotFound {
                        127
                    } else {
                        126
                    };
                    (code, format!("cannot run {program:?}: {e}"))
                })
            })
            .join()
    });
    let child = match started {
        Ok(Ok(c)) => c,
        Ok(Err((code, msg))) => {
            say(&msg);
            return code;
        }
        Err(_) => {
            say("supervisor: the thread starting the job failed");
            return 125;
        }
    };
    let job = Pid::from_child(&child);
    // The child is reaped below with wait(2) for any child; the handle is not waited on.
    std::mem::forget(child);
    // 5. Listen to the worker and reap.
    {
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("gatos-supervisor-control".into())
            .spawn(move || {
                let mut lines = stdin.lock();
                let mut buf = String::new();
                loop {
                    buf.clear();
                    let ev = match lines.read_line(&mut buf) {
                        Ok(0) | Err(_) => Event::Kill,
                        Ok(_) if buf.trim() == "term" => Event::Term,
                        Ok(_) if buf.trim() == "kill" => Event::Kill,
                        Ok(_) => continue,
                    };
                    let end = matches!(ev, Event::Kill);
                    if tx.send(ev).is_err() || end {
                        return;
                    }
                }
            });
    }
    {
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("gatos-supervisor-reaper".into())
            .spawn(move || reap(job, &tx));
    }
    drop(tx);
    let status = loop {
        match rx.recv() {
            Ok(Event::Term) => {
                let _ =
                    rustix::process::kill_process_group(rustix::process::getpgrp(), Signal::TERM);
            }
            Ok(Event::Kill) => {
                kill_descendants();
            }
            Ok(Event::Exited(status)) => break Some(status),
            Err(_) => break None,
        }
    };
    // 6. Nothing the job started outlives it.
    kill_descendants();
    match status {
        Some(s) => match (s.exit_status(), s.terminating_signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => die_of(sig),
            (None, None) => 125,
        },
        None => 125,
    }
}

/// HUP (the parent-death signal: the worker died) kills everything; TERM and INT are
/// caught and dropped, so the TERM the supervisor sends its own group reaches only the job
/// (the job's `exec` resets caught signals to their defaults).
fn watch_signals(tx: mpsc::Sender<Event>) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    std::thread::Builder::new()
        .name("gatos-supervisor-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if s == SIGHUP && tx.send(Event::Kill).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

/// Waits for every child (orphans adopted as subreaper included) and reports the job's end.
fn reap(job: Pid, tx: &mpsc::Sender<Event>) {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == job => {
                let _ = tx.send(Event::Exited(status));
            }
            Ok(Some(_)) => {}
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            // No children left (or an error that would repeat): nothing more to reap.
            Err(_) => return,
        }
    }
}

/// Tells whether this process has any child. As a subreaper it adopts every orphan of
/// the job, so any living descendant means a child: none (the usual end of a job that
/// started nothing) spares the walk through `/proc`.
fn has_children() -> bool {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    // WNOWAIT: look without reaping, so the reaper thread still sees the job end.
    !matches!(
        waitid(
            WaitId::All,
            WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT | WaitIdOptions::EXITED
        ),
        Err(rustix::io::Errno::CHILD)
    )
}

/// Kills every descendant of this process until none is left (bounded: a process that
/// forks faster than it is killed gets a few hundred rounds, then is left to the
/// worker's group kill).
fn kill_descendants() {
    if !has_children() {
        return;
    }
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = descendants(me);
        if alive.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in alive {
            if let Some(p) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The live (not zombie) descendants of `root`, from `/proc`.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(st) = super::leftovers::stat(pid)
            && st.state != 'Z'
            && st.state != 'X'
        {
            parent_of.push((pid, st.ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        for (c, pp) in &parent_of {
            if *pp == p && !found.contains(c) {
                found.push(*c);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// Dies of `sig` as the job did, so the worker sees the same status (no core dump).
fn die_of(sig: i32) -> i32 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Core).maximum;
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: hard,
        },
    );
    // Back to the default action (Rust ignores SIGPIPE and handles SIGSEGV/SIGBUS for its
    // stack guard), then raised: the worker sees the job's signal, not an exit code.
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    std::thread::sleep(Duration::from_millis(100));
    128 + sig
}

/// Finds the program as a shell would: a name with a `/` is a path (relative to the
/// job's directory), else the first executable file of that name on the job's `PATH`.
fn resolve(
    program: &str,
    path_var: Option<&str>,
    cwd: &Path,
    allowed: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    if program.contains('/') {
        return Ok(cwd.join(program));
    }
    let path = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    for dir in std::env::split_paths(path) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let candidate = if dir.is_absolute() {
            dir.join(program)
        } else {
            cwd.join(dir).join(program)
        };
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
            && allowed(&candidate)
        {
            return Ok(candidate);
        }
    }
    Err(format!(
        "{program}: command not found on the job's PATH ({path})"
    ))
}
