//! The job sandbox: a Landlock allowlist (ADR 0021, docs/jobs.md "What a job can reach").
//!
//! A job may read and execute the system directories and the directories on its `PATH`,
//! read and write its attempt directory (its `HOME`, `TMPDIR` and checkout) and a few
//! device files, and nothing else: the repository, the worker's home, the signing key and
//! gatosd's token are outside it. Where the kernel's ABI allows, signals and abstract Unix
//! sockets are scoped to the sandbox too, and (ABI 9) connecting to pathname sockets
//! outside it is refused. The supervisor applies it to itself before starting the job,
//! so the job and everything it starts inherit it.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use serde::{Deserialize, Serialize};

/// The newest Landlock ABI gatos knows and asks for; older kernels get what they offer.
const TARGET: ABI = ABI::V9;

/// Directories every job may read and execute (those that exist).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc",
    "/sys", "/run", "/dev",
];

/// Device files every job may read and write.
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/shm",
];

/// How a worker uses the sandbox (`worker --sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The worker refuses to start where Landlock is not available.
    Required,
    /// On where the kernel supports it, a warning where not.
    #[default]
    Auto,
    /// No sandbox: a job can read everything its user can (docs/jobs.md).
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "required" => Ok(Mode::Required),
            "auto" => Ok(Mode::Auto),
            "off" => Ok(Mode::Off),
            _ => Err(format!(
                "a sandbox mode is required, auto or off, not {s:?}"
            )),
        }
    }
}

/// What one attempt's sandbox allows (sent to the supervisor).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rules {
    /// Read and execute.
    pub read: Vec<PathBuf>,
    /// Read, write, create, remove, execute.
    pub write: Vec<PathBuf>,
    /// Fail rather than run unconfined when the kernel cannot enforce it.
    pub required: bool,
}

/// What the kernel offers: the Landlock ABI level of the features gatos uses (9: pathname
/// sockets; 6: scopes; 5 and below: filesystem rights), or `None` where there is none.
pub fn kernel_abi() -> Option<u32> {
    let fs = |abi: ABI| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .is_ok_and(|r| r.create().is_ok())
    };
    let scoped = |abi: ABI| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .scope(Scope::from_all(abi))
            .is_ok_and(|r| r.create().is_ok())
    };
    if fs(ABI::V9) {
        Some(9)
    } else if scoped(ABI::V6) {
        Some(6)
    } else {
        [ABI::V5, ABI::V3, ABI::V2, ABI::V1]
            .into_iter()
            .find(|abi| fs(*abi))
            .map(|abi| abi as u32)
    }
}

impl Rules {
    /// The rules every attempt of a worker shares (all but its own directory, added by
    /// [`Rules::with_dir`]): the system directories, the `PATH`, what the operator added,
    /// and nothing that contains or lies inside `hidden` (the git directory). Paths are
    /// resolved (a symbolic link into the git directory is caught, and `/bin` on a
    /// merged-`/usr` system is `/usr/bin`), and a path beneath another of the same list is
    /// dropped, so the supervisor opens a few directories rather than dozens.
    pub fn base(
        path_var: Option<&str>,
        extra_read: &[PathBuf],
        extra_write: &[PathBuf],
        hidden: &[PathBuf],
        required: bool,
    ) -> Rules {
        let keep = |p: &Path| -> Option<PathBuf> {
            if !p.is_absolute() {
                return None;
            }
            let p = std::fs::canonicalize(p).ok()?;
            let hides = hidden.iter().any(|h| h.starts_with(&p) || p.starts_with(h));
            (!hides).then_some(p)
        };
        let mut read: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
        if let Some(path) = path_var {
            read.extend(std::env::split_paths(path));
        }
        read.extend(extra_read.iter().cloned());
        let read = minimal(read.iter().filter_map(|p| keep(p)).collect());
        let mut write: Vec<PathBuf> = DEVICES.iter().map(PathBuf::from).collect();
        write.extend(extra_write.iter().cloned());
        let write = minimal(write.iter().filter_map(|p| keep(p)).collect());
        Rules {
            read,
            write,
            required,
        }
    }

    /// Adds an attempt's own directory (read-write).
    pub fn with_dir(mut self, dir: &Path) -> Rules {
        if dir.is_absolute() {
            self.write.push(dir.to_owned());
        }
        self
    }

    /// Confines the calling thread and everything it starts from now on.
    ///
    /// # Errors
    /// When the ruleset cannot be built or applied, or `required` and the kernel enforces
    /// nothing (the message says which).
    pub fn apply(&self) -> Result<Enforced, String> {
        let fail = |e: landlock::RulesetError| format!("the Landlock sandbox: {e}");
        let status: RestrictionStatus = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(TARGET))
            .map_err(fail)?
            .scope(Scope::from_all(TARGET))
            .map_err(fail)?
            .create()
            .map_err(fail)?
            .add_rules(path_beneath_rules(&self.read, AccessFs::from_read(TARGET)))
            .map_err(fail)?
            .add_rules(path_beneath_rules(&self.write, AccessFs::from_all(TARGET)))
            .map_err(fail)?
            .restrict_self()
            .map_err(fail)?;
        let enforced = match status.ruleset {
            RulesetStatus::FullyEnforced => Enforced::Full,
            RulesetStatus::PartiallyEnforced => Enforced::Partial,
            _ => Enforced::None,
        };
        if self.required && enforced == Enforced::None {
            return Err("the sandbox is required but this kernel does not enforce Landlock".into());
        }
        Ok(enforced)
    }
}

/// Refuses (`EPERM`) the calls that change another process's resource limits or priority,
/// which Landlock does not cover: `prlimit64` setting a limit of any process but the
/// caller's own (pid 0), and `setpriority` of anything but the caller (a job could
/// otherwise make the worker, its supervisor or another job die of `SIGXFSZ`, run out of
/// descriptors or be killed by a CPU limit). Applies to the calling thread and everything it
/// starts; calls of another architecture than the worker's own (32-bit programs on x86-64)
/// end the process, since the filter could not tell their numbers apart.
///
/// # Errors
/// When the kernel refuses the filter (no seccomp).
pub fn filter_process_calls() -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    fn fail(e: impl std::fmt::Display) -> String {
        format!("the system-call filter: {e}")
    }
    let ne = |arg: u8, len: SeccompCmpArgLen, v: u64| {
        SeccompCondition::new(arg, len, SeccompCmpOp::Ne, v).map_err(fail)
    };
    let rule = |c: Vec<SeccompCondition>| SeccompRule::new(c).map_err(fail);
    let arch = std::env::consts::ARCH.try_into().map_err(fail)?;
    let mut rules = std::collections::BTreeMap::new();
    // The native numbers, and on x86-64 their x32 twins (the same call with bit 30 set,
    // which a kernel with the x32 ABI enabled takes under the same architecture).
    for base in libc_nr::BASES {
        // prlimit64(pid, resource, new, old): setting (new != NULL) for a pid other than 0.
        rules.insert(
            base + libc_nr::PRLIMIT64,
            vec![rule(vec![
                ne(0, SeccompCmpArgLen::Dword, 0)?,
                ne(2, SeccompCmpArgLen::Qword, 0)?,
            ])?],
        );
        // setpriority(which, who, prio): anything but PRIO_PROCESS (0) of the caller (0).
        rules.insert(
            base + libc_nr::SETPRIORITY,
            vec![
                rule(vec![ne(0, SeccompCmpArgLen::Dword, 0)?])?,
                rule(vec![ne(1, SeccompCmpArgLen::Dword, 0)?])?,
            ],
        );
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(rustix::io::Errno::PERM.raw_os_error()).unwrap_or(1)),
        arch,
    )
    .map_err(fail)?;
    let program: BpfProgram = filter.try_into().map_err(fail)?;
    seccompiler::apply_filter(&program).map_err(fail)
}

/// The numbers of the calls [`filter_process_calls`] filters, on the architectures
/// seccompiler knows (elsewhere the filter is not built, and the supervisor says so).
mod libc_nr {
    #[cfg(target_arch = "x86_64")]
    pub const PRLIMIT64: i64 = 302;
    #[cfg(target_arch = "x86_64")]
    pub const SETPRIORITY: i64 = 141;
    /// Native, and x32 (`__X32_SYSCALL_BIT`).
    #[cfg(target_arch = "x86_64")]
    pub const BASES: [i64; 2] = [0, 0x4000_0000];
    #[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
    pub const PRLIMIT64: i64 = 261;
    #[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
    pub const SETPRIORITY: i64 = 140;
    #[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
    pub const BASES: [i64; 1] = [0];
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    pub const BASES: [i64; 0] = [];
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    pub const PRLIMIT64: i64 = 0;
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    pub const SETPRIORITY: i64 = 0;
}

/// Sorted, without duplicates, and without a path beneath another one of the list.
fn minimal(mut v: Vec<PathBuf>) -> Vec<PathBuf> {
    v.sort();
    v.dedup();
    let mut out: Vec<PathBuf> = Vec::with_capacity(v.len());
    for p in v {
        if !out.iter().any(|q| p.starts_with(q)) {
            out.push(p);
        }
    }
    out
}

/// How much of the sandbox the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    /// Everything gatos asked for.
    Full,
    /// What an older ABI offers (some scopes or rights are missing).
    Partial,
    /// Nothing: the job runs unconfined.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_git_directory_is_never_granted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = tmp.path().join("repo");
        let git = repo.join(".git");
        std::fs::create_dir_all(git.join("gatos")).expect("mkdir");
        let attempt = tmp.path().join("attempt");
        std::fs::create_dir(&attempt).expect("mkdir");
        let r = Rules::base(
            Some(&format!("/usr/bin:{}:relative", repo.display())),
            &[git.join("gatos")],
            &[tmp.path().to_owned()],
            std::slice::from_ref(&git),
            false,
        )
        .with_dir(&attempt);
        assert!(
            r.read
                .iter()
                .all(|p| !git.starts_with(p) && !p.starts_with(&git)),
            "{r:?}"
        );
        assert!(r.write.iter().all(|p| !git.starts_with(p)), "{r:?}");
        assert!(r.write.contains(&attempt));
        assert!(r.read.iter().any(|p| Path::new("/usr/bin").starts_with(p)));
        // Nothing beneath another entry: /usr covers /usr/bin.
        assert!(!r.read.contains(&PathBuf::from("/usr/bin")), "{r:?}");
        assert!(!r.read.iter().any(|p| p == Path::new("relative")));
    }

    #[test]
    fn a_symbolic_link_into_the_git_directory_is_not_granted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let git = root.join("repo").join(".git");
        std::fs::create_dir_all(git.join("gatos")).expect("mkdir");
        let link = root.join("innocent");
        std::os::unix::fs::symlink(git.join("gatos"), &link).expect("symlink");
        let r = Rules::base(
            Some(&link.display().to_string()),
            std::slice::from_ref(&link),
            std::slice::from_ref(&link),
            std::slice::from_ref(&git),
            false,
        );
        assert!(
            r.read.iter().chain(&r.write).all(|p| !p.starts_with(&git)),
            "{r:?}"
        );
    }

    #[test]
    fn the_live_log_spool_is_never_granted() {
        // The worker's spool of a running job (jobs::logs) lies in the git directory: no
        // list naming it, or a directory around or beneath it, may open it to a job.
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let git = root.join("repo").join(".git");
        let spool = git
            .join("gatos")
            .join("logs")
            .join("01J00000000000000000000000");
        std::fs::create_dir_all(&spool).expect("mkdir");
        let attempt = root.join("gatos-attempt");
        std::fs::create_dir(&attempt).expect("mkdir");
        let named = [
            spool.clone(),
            spool.parent().expect("logs").to_owned(),
            git.join("gatos"),
            root.join("repo"),
        ];
        let path_var = std::env::join_paths(&named).expect("PATH");
        let r = Rules::base(
            path_var.to_str(),
            &named,
            &named,
            std::slice::from_ref(&git),
            true,
        )
        .with_dir(&attempt);
        assert!(
            r.read.iter().chain(&r.write).all(|p| !spool.starts_with(p)),
            "{r:?}"
        );
    }

    #[test]
    fn modes_parse() {
        assert_eq!("required".parse::<Mode>(), Ok(Mode::Required));
        assert_eq!("auto".parse::<Mode>(), Ok(Mode::Auto));
        assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
        assert!("on".parse::<Mode>().is_err());
    }
}
