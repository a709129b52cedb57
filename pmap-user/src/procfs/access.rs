//! Why the kernel refused to let pmap-trace read a process. `/proc/PID/maps` and `smaps` open
//! through `proc_mem_open` → `mm_access` (fs/proc/base.c, kernel/fork.c), which fails with EACCES
//! unless `ptrace_may_access(task, PTRACE_MODE_READ_FSCREDS)` allows it: the rules of
//! `__ptrace_may_access` (kernel/ptrace.c), then every security module's `ptrace_access_check`,
//! the capability module's first (`cap_ptrace_access_check`, security/commoncap.c). pmap is
//! refused by the same check. The rules are replayed here, in the kernel's order, from what
//! `/proc` shows of both processes, to name the first one that fails and what to do about it.

use std::{fmt, fs};

/// The capability that lifts every rule of the kernel's own check.
const CAP_SYS_PTRACE: u32 = 19;

/// `/proc/self/ns/user` of a process in the initial user namespace (`PROC_USER_INIT_INO`,
/// include/linux/proc_ns.h).
const INITIAL_USER_NAMESPACE: &str = "user:[4026531837]";

/// What one process's credentials are, as `/proc/PID/status` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective, saved and filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gids: [u32; 4],
    pub cap_permitted: u64,
    pub cap_effective: u64,
    /// `/proc/PID/uid_map` as pmap-trace reads it: the same text for two processes of one user
    /// namespace.
    pub uid_map: String,
}

impl Credentials {
    /// `who` is `self` or a PID.
    pub fn read(who: &str) -> Option<Credentials> {
        let status = fs::read_to_string(format!("/proc/{who}/status")).ok()?;
        let ids = |key: &str| -> Option<[u32; 4]> {
            let line = status.lines().find_map(|l| l.strip_prefix(key))?;
            let ids: Vec<u32> = line
                .split_whitespace()
                .filter_map(|id| id.parse().ok())
                .collect();
            ids.try_into().ok()
        };
        let caps = |key: &str| -> Option<u64> {
            let line = status.lines().find_map(|l| l.strip_prefix(key))?;
            u64::from_str_radix(line.trim(), 16).ok()
        };
        Some(Credentials {
            uids: ids("Uid:")?,
            gids: ids("Gid:")?,
            cap_permitted: caps("CapPrm:")?,
            cap_effective: caps("CapEff:")?,
            uid_map: fs::read_to_string(format!("/proc/{who}/uid_map")).unwrap_or_default(),
        })
    }

    fn has(&self, capability: u32) -> bool {
        self.cap_effective & (1 << capability) != 0
    }
}

/// The reader (pmap-trace) and the process it could not read.
pub struct Parties {
    pub reader: Credentials,
    /// Whether the reader is in the initial user namespace, whose capabilities count in every
    /// other one.
    pub reader_in_initial_namespace: bool,
    pub target: Credentials,
    /// The owner of the target's `/proc/PID` files: root instead of the process's user when the
    /// process is not dumpable (`task_dump_owner`, fs/proc/base.c).
    pub target_proc_owner: Option<u32>,
    /// The security modules the kernel runs besides the capability module.
    pub security_modules: Vec<String>,
}

impl Parties {
    /// Reads both sides now; `None` when the target is gone or its status cannot be read.
    pub fn read(pid: i32) -> Option<Parties> {
        use std::os::unix::fs::MetadataExt;
        Some(Parties {
            reader: Credentials::read("self")?,
            reader_in_initial_namespace: fs::read_link("/proc/self/ns/user")
                .is_ok_and(|ns| ns.as_os_str() == INITIAL_USER_NAMESPACE),
            target: Credentials::read(&pid.to_string())?,
            target_proc_owner: fs::metadata(format!("/proc/{pid}/status"))
                .ok()
                .map(|m| m.uid()),
            security_modules: security_modules(),
        })
    }

    /// The first rule of the kernel's check that refuses the reader, in the kernel's order.
    pub fn denial(&self) -> Denial {
        let (reader, target) = (&self.reader, &self.target);
        // Capabilities count in the reader's own user namespace and those below it; a target
        // elsewhere (pmap-trace in a container, the target on the host) is out of their reach.
        let same_namespace = reader.uid_map == target.uid_map;
        if !same_namespace && !self.reader_in_initial_namespace {
            return Denial::OtherUserNamespace;
        }
        if reader.has(CAP_SYS_PTRACE) {
            return Denial::SecurityPolicy {
                modules: self.security_modules.clone(),
            };
        }
        // __ptrace_may_access: the reader's filesystem ids against all of the target's.
        let fsuid = reader.uids[3];
        if target.uids[..3].iter().any(|&uid| uid != fsuid) {
            return Denial::OtherUser {
                reader: fsuid,
                target: target.uids[1],
            };
        }
        let fsgid = reader.gids[3];
        if target.gids[..3].iter().any(|&gid| gid != fsgid) {
            return Denial::OtherGroup {
                reader: fsgid,
                target: target.gids[1],
            };
        }
        // cap_ptrace_access_check: the target may hold no capability the reader lacks.
        let missing = target.cap_permitted & !reader.cap_effective;
        if missing != 0 {
            return Denial::MoreCapabilities {
                missing: capability_names(missing),
            };
        }
        // What is left of the kernel's rules is the target's dumpability (checked against
        // the same CAP_SYS_PTRACE), which /proc shows as root owning its files.
        let root_owned = self.target_proc_owner == Some(0) && target.uids[1] != 0;
        Denial::NotDumpable {
            certain: root_owned,
        }
    }
}

/// Why reading a process was refused, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The target could not be looked at (it is gone, or its status is unreadable).
    Unknown,
    /// The target is outside the user namespaces where pmap-trace's capabilities count.
    OtherUserNamespace,
    /// The target runs as another user and pmap-trace has no CAP_SYS_PTRACE.
    OtherUser { reader: u32, target: u32 },
    /// The target runs as another group and pmap-trace has no CAP_SYS_PTRACE.
    OtherGroup { reader: u32, target: u32 },
    /// The target holds capabilities pmap-trace lacks, and pmap-trace has no CAP_SYS_PTRACE.
    MoreCapabilities { missing: Vec<&'static str> },
    /// The target is not dumpable and pmap-trace has no CAP_SYS_PTRACE; `certain` when its
    /// `/proc` files say so, else it is all that is left of the kernel's rules.
    NotDumpable { certain: bool },
    /// pmap-trace passes every rule of the kernel's own check: a security module refused.
    SecurityPolicy { modules: Vec<String> },
}

impl Denial {
    pub fn of(pid: i32) -> Denial {
        Parties::read(pid).map_or(Denial::Unknown, |parties| parties.denial())
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FIX: &str = "run pmap-trace as root (sudo), or grant it CAP_SYS_PTRACE";
        match self {
            Denial::Unknown => write!(
                f,
                "the kernel's ptrace access check refused it (reading another user's process \
                 needs CAP_SYS_PTRACE: {FIX})"
            ),
            Denial::OtherUserNamespace => write!(
                f,
                "the process is outside pmap-trace's user namespace (pmap-trace runs in one of \
                 its own, as in a container), where its capabilities do not count: run \
                 pmap-trace in the process's user namespace or an ancestor of it (on the host)"
            ),
            Denial::OtherUser { reader, target } => {
                write!(
                    f,
                    "the process runs as {} and pmap-trace as {}, without CAP_SYS_PTRACE: {FIX}",
                    user_name(*target),
                    user_name(*reader),
                )?;
                if *target != 0 {
                    write!(f, ", or run it as {}", user_name(*target))?;
                }
                Ok(())
            }
            Denial::OtherGroup { reader, target } => write!(
                f,
                "the process runs as group {target} and pmap-trace as group {reader}, without \
                 CAP_SYS_PTRACE: {FIX}"
            ),
            Denial::MoreCapabilities { missing } => write!(
                f,
                "the process holds capabilities pmap-trace lacks ({}), and pmap-trace has no \
                 CAP_SYS_PTRACE: {FIX}",
                missing.join(", ")
            ),
            Denial::NotDumpable { certain } => write!(
                f,
                "the process {} not dumpable (a set-user-ID or file-capability program, or one \
                 that called prctl(PR_SET_DUMPABLE, 0)), and pmap-trace has no CAP_SYS_PTRACE: \
                 {FIX}",
                if *certain { "is" } else { "must be" }
            ),
            Denial::SecurityPolicy { modules } => {
                let modules = if modules.is_empty() {
                    String::new()
                } else {
                    format!(" (active here: {})", modules.join(", "))
                };
                write!(
                    f,
                    "pmap-trace has CAP_SYS_PTRACE, which passes the kernel's own ptrace rules, \
                     so a security module{modules} or a kernel hardening policy protects the \
                     process: pmap is refused the same way; read it from where that policy \
                     allows"
                )
            }
        }
    }
}

/// `root (uid 0)`, or `uid 1234` for a user the password database does not know.
fn user_name(uid: u32) -> String {
    // SAFETY: a plain C struct of integers and pointers, for which zero is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the name is copied out before `buffer`
    // goes.
    let name = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        (!found.is_null() && !entry.pw_name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(entry.pw_name)
                .to_string_lossy()
                .into_owned()
        })
    };
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Capability names by bit (include/uapi/linux/capability.h).
const CAPABILITY_NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

fn capability_names(bits: u64) -> Vec<&'static str> {
    (0..64)
        .filter(|bit| bits & (1 << bit) != 0)
        .map(|bit| {
            CAPABILITY_NAMES
                .get(bit)
                .copied()
                .unwrap_or("a newer capability")
        })
        .collect()
}

/// The security modules the kernel runs, the capability module left out (its rule is
/// replayed above): from `lsm_list_modules(2)` (Linux 6.8), else securityfs.
fn security_modules() -> Vec<String> {
    let names: Vec<String> = listed_module_ids()
        .map(|ids| ids.into_iter().map(module_name).collect())
        .or_else(|| {
            fs::read_to_string("/sys/kernel/security/lsm")
                .ok()
                .map(|list| list.trim().split(',').map(str::to_owned).collect())
        })
        .unwrap_or_default();
    names
        .into_iter()
        .filter(|name| name != "capability")
        .collect()
}

fn listed_module_ids() -> Option<Vec<u64>> {
    const SYS_LSM_LIST_MODULES: libc::c_long = 461;
    let mut ids = [0u64; 32];
    let mut size = std::mem::size_of_val(&ids) as u32;
    // SAFETY: `ids` holds `size` bytes, `size` is a valid u32 out-pointer.
    let count = unsafe { libc::syscall(SYS_LSM_LIST_MODULES, ids.as_mut_ptr(), &mut size, 0) };
    (count >= 0).then(|| ids[..(count as usize).min(ids.len())].to_vec())
}

/// Names of the `LSM_ID_*` values (include/uapi/linux/lsm.h).
fn module_name(id: u64) -> String {
    let name = match id {
        100 => "capability",
        101 => "selinux",
        102 => "smack",
        103 => "tomoyo",
        104 => "apparmor",
        105 => "yama",
        106 => "loadpin",
        107 => "safesetid",
        108 => "lockdown",
        109 => "bpf",
        110 => "landlock",
        111 => "ima",
        112 => "evm",
        113 => "ipe",
        other => return format!("lsm {other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = (1 << 41) - 1;

    fn credentials(uid: u32, caps: u64) -> Credentials {
        Credentials {
            uids: [uid; 4],
            gids: [uid; 4],
            cap_permitted: caps,
            cap_effective: caps,
            uid_map: "         0          0 4294967295\n".into(),
        }
    }

    fn parties(reader: Credentials, target: Credentials) -> Parties {
        Parties {
            reader,
            reader_in_initial_namespace: true,
            target,
            target_proc_owner: None,
            security_modules: vec!["landlock".into()],
        }
    }

    #[test]
    fn names_the_first_rule_of_the_kernel_that_refuses() {
        let root = credentials(0, ALL);
        let nobody = credentials(65534, 0);
        assert_eq!(
            parties(nobody.clone(), root.clone()).denial(),
            Denial::OtherUser {
                reader: 65534,
                target: 0
            }
        );
        let without_ptrace = credentials(0, ALL & !(1 << CAP_SYS_PTRACE));
        assert_eq!(
            parties(without_ptrace, root.clone()).denial(),
            Denial::MoreCapabilities {
                missing: vec!["cap_sys_ptrace"]
            }
        );
        let mut hidden = parties(nobody.clone(), nobody.clone());
        hidden.target_proc_owner = Some(0);
        assert_eq!(hidden.denial(), Denial::NotDumpable { certain: true });
        assert_eq!(
            parties(root.clone(), root.clone()).denial(),
            Denial::SecurityPolicy {
                modules: vec!["landlock".into()]
            }
        );
        let mut contained = parties(root.clone(), root);
        contained.reader_in_initial_namespace = false;
        contained.reader.uid_map = "         0          0          1\n".into();
        assert_eq!(contained.denial(), Denial::OtherUserNamespace);
    }

    #[test]
    fn a_denial_says_why_and_what_to_do() {
        let text = Denial::MoreCapabilities {
            missing: vec!["cap_sys_ptrace", "cap_sys_resource"],
        }
        .to_string();
        assert!(
            text.contains("(cap_sys_ptrace, cap_sys_resource)") && text.contains("sudo"),
            "{text}"
        );
        assert_eq!(user_name(0), "root (uid 0)");
        assert_eq!(
            capability_names(1 << 24 | 1),
            ["cap_chown", "cap_sys_resource"]
        );
    }
}
