//! The mapping-changing calls, each described once: its number and name, what it returns, and
//! each argument's register slot and kind. From one row per call, [`syscalls!`] makes the typed
//! [`Call`] the table matches on, the decoder's look-up from a syscall number and its argument
//! registers, and [`Call::args`], the arguments in order by kind, which the renderers print
//! (one match over kinds for text, one for JSON) and the integration tests compare with what a
//! workload passed.

use pmap_common::{
    linux::{MREMAP_FIXED, PR_SET_VMA, UFFDIO_REGISTER, UFFDIO_UNREGISTER},
    syscall_nr,
};

/// What an argument is, which says how it prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// A user address.
    Address,
    /// A length in bytes.
    Size,
    /// A file offset in bytes (mmap's).
    Offset,
    /// A plain unsigned number (remap_file_pages's page offset, mbind's policy mode).
    Decimal,
    /// A signed `int` (a protection key, a shared memory id).
    Signed,
    /// Flag bits pmap-trace does not name.
    Bits,
    /// `PROT_*` bits.
    Prot,
    /// mmap's flags: the mapping type, the `MAP_*` bits and the huge page size.
    MapFlags,
    /// `MREMAP_*` bits.
    MremapFlags,
    /// mlock2's `MLOCK_*` bits.
    Mlock2Flags,
    /// mlockall's `MCL_*` bits.
    MlockallFlags,
    /// shmat's `SHM_*` bits.
    ShmatFlags,
    /// `UFFDIO_REGISTER_MODE_*` bits.
    UffdRegisterMode,
    /// A `MADV_*` advice.
    Advice,
    /// A file descriptor.
    Fd,
    /// The descriptor of the file mmap maps: the file's path goes with it.
    MappedFd,
    /// prctl's option, `PR_SET_VMA`.
    PrctlOption,
    /// The `PR_SET_VMA` attribute, `PR_SET_VMA_ANON_NAME`.
    VmaAttribute,
    /// An ioctl request.
    IoctlRequest,
}

/// What a call returns when it does not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    /// An address (of the new or moved mapping, or the attached segment), or an errno.
    Address,
    /// Zero, or an errno.
    Status,
    /// The program break. brk never returns an errno: it reports a failure by returning the
    /// old break (mm/mmap.c `brk`).
    Break,
}

/// One argument of a call, as the renderers print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg {
    /// Its name: the JSON field.
    pub name: &'static str,
    pub kind: ArgKind,
    /// The value in its register (an `int` sign-extended): as the call passed it, or for a
    /// userfaultfd ioctl, the field of the struct the kernel side read.
    pub value: u64,
    /// What the text line prints before and after its value, besides the `, ` between
    /// arguments: the braces and field names of the struct it lies in, as strace prints it.
    pub text_around: (&'static str, &'static str),
    /// Whether the text line shows it (strace leaves out mremap's new_address without
    /// MREMAP_FIXED); JSON has every argument.
    pub in_text: bool,
}

/// The static part of an [`Arg`]: everything but the value.
#[derive(Clone, Copy, Debug)]
struct ArgSpec {
    name: &'static str,
    kind: ArgKind,
    text_around: (&'static str, &'static str),
    /// Shown in text only when the argument in this slot has these bits set.
    printed_if_set: Option<(usize, u64)>,
}

impl ArgSpec {
    const fn new(name: &'static str, kind: ArgKind) -> ArgSpec {
        ArgSpec {
            name,
            kind,
            text_around: ("", ""),
            printed_if_set: None,
        }
    }

    /// The argument so described with this value, among the argument registers `raw`.
    #[inline(always)]
    fn with(self, value: u64, raw: &[u64; 6]) -> Arg {
        Arg {
            name: self.name,
            kind: self.kind,
            value,
            text_around: self.text_around,
            in_text: self
                .printed_if_set
                .is_none_or(|(slot, bits)| raw[slot] & bits != 0),
        }
    }
}

/// Whether a call's fields are in ascending slot order and the selector's slot is none of
/// theirs, so that [`Call::for_each_arg`] gives them in register order.
const fn in_order(slots: &[usize], selector: Option<usize>) -> bool {
    let mut at = 0;
    while at < slots.len() {
        if at > 0 && slots[at] <= slots[at - 1] {
            return false;
        }
        if let Some(selector) = selector
            && selector == slots[at]
        {
            return false;
        }
        at += 1;
    }
    true
}

/// Whether the argument in `slot` comes before the call's selector, if it has one.
const fn before_selector(slot: usize, selector: Option<usize>) -> bool {
    match selector {
        Some(selector) => slot < selector,
        None => true,
    }
}

/// How a field's type is read from a 64-bit argument register and written back.
trait Register: Copy {
    fn from_register(raw: u64) -> Self;
    fn to_register(self) -> u64;
}

impl Register for u64 {
    fn from_register(raw: u64) -> u64 {
        raw
    }
    fn to_register(self) -> u64 {
        self
    }
}

/// An ioctl request: the kernel takes `unsigned int cmd` (fs/ioctl.c).
impl Register for u32 {
    fn from_register(raw: u64) -> u32 {
        raw as u32
    }
    fn to_register(self) -> u64 {
        self.into()
    }
}

/// An `int` (a descriptor, a key, an id): the low half, sign-extended back.
impl Register for i32 {
    fn from_register(raw: u64) -> i32 {
        raw as i32
    }
    fn to_register(self) -> u64 {
        i64::from(self) as u64
    }
}

/// The description of a field: its name and kind, and the [`ArgSpec`] fields a row sets.
macro_rules! arg_spec {
    ($field:ident $kind:ident $($spec:tt)*) => {
        ArgSpec {
            $($spec)*
            ..ArgSpec::new(stringify!($field), ArgKind::$kind)
        }
    };
}

/// Makes [`Call`] and its description from one row per call:
///
/// `Variant = SYSCALL_NR "name" -> Returns [where selector: type = slot == VALUE => Kind]
/// [{ field: type = slot => Kind [{ ArgSpec fields }], ... }];`
///
/// A `where` selector is an argument that tells this call apart from the others made through
/// the same syscall (an ioctl request, a prctl option): the decoder checks it, the variant
/// does not keep it, the renderers print it. The `{ ... }` after a kind sets [`ArgSpec`] fields
/// (its name in JSON, the text around it, when text shows it). A call's fields are in slot
/// order, which a compile-time check holds it to.
macro_rules! syscalls {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $nr:ident $name:literal -> $returns:ident
        $(where $sel:ident: $sel_ty:ty = $sel_slot:literal == $sel_value:ident => $sel_kind:ident)?
        $({ $(
            $field:ident: $ty:ty = $slot:literal => $kind:ident $({ $($spec:tt)* })?
        ),* $(,)? })?;
    )*) => {
        /// A mapping-changing call with its arguments as the user passed them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Call {
            $($(#[$doc])* $variant $({ $($field: $ty),* })?,)*
        }

        impl Call {
            /// The syscall's name as strace and the kernel's tracepoints spell it.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Call::$variant { .. } => $name,)*
                }
            }

            /// What the call returns when it does not fail.
            pub fn returns(&self) -> Returns {
                match self {
                    $(Call::$variant { .. } => Returns::$returns,)*
                }
            }

            /// The call syscall `nr` made with these argument registers: `None` when the
            /// number, or the selector of an ioctl or a prctl, is not one of a described call.
            pub(super) fn from_registers(nr: u32, raw: [u64; 6]) -> Option<Call> {
                Some(match nr {
                    $(syscall_nr::$nr
                        $(if <$sel_ty as Register>::from_register(raw[$sel_slot]) == $sel_value)?
                        => Call::$variant $({ $($field: Register::from_register(raw[$slot])),* })?,)*
                    _ => return None,
                })
            }

            /// Calls `visit` with each argument, in register order. Each call site has its
            /// argument's description as a constant, so that a visitor inlined there prints it
            /// as a hand-written formatter would.
            #[inline(always)]
            pub fn for_each_arg(&self, mut visit: impl FnMut(Arg)) {
                match *self {
                    $(Call::$variant $({ $($field),* })? => {
                        // A call without arguments (munlockall) uses neither.
                        #[allow(dead_code)]
                        const SELECTOR: Option<usize> = [$(Some($sel_slot),)? None][0];
                        $(const _: () = assert!(in_order(&[$($slot),*], SELECTOR));)?
                        #[allow(unused_mut, unused_variables)]
                        let mut raw = [0; 6];
                        $(raw[$sel_slot] = <$sel_ty as Register>::to_register($sel_value);)?
                        $($(raw[$slot] = Register::to_register($field);)*)?
                        $($(if before_selector($slot, SELECTOR) {
                            const SPEC: ArgSpec = arg_spec!($field $kind $($($spec)*,)?);
                            visit(SPEC.with(raw[$slot], &raw));
                        })*)?
                        $(visit(ArgSpec::new(stringify!($sel), ArgKind::$sel_kind)
                            .with(raw[$sel_slot], &raw));)?
                        $($(if !before_selector($slot, SELECTOR) {
                            const SPEC: ArgSpec = arg_spec!($field $kind $($($spec)*,)?);
                            visit(SPEC.with(raw[$slot], &raw));
                        })*)?
                    })*
                }
            }
        }
    };
}

syscalls! {
    Mmap = MMAP "mmap" -> Address {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
        prot: u64 = 2 => Prot,
        flags: u64 = 3 => MapFlags,
        fd: i32 = 4 => MappedFd,
        offset: u64 = 5 => Offset,
    };
    Munmap = MUNMAP "munmap" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
    };
    Brk = BRK "brk" -> Break {
        addr: u64 = 0 => Address,
    };
    Mremap = MREMAP "mremap" -> Address {
        old_addr: u64 = 0 => Address,
        old_len: u64 = 1 => Size,
        new_len: u64 = 2 => Size,
        flags: u64 = 3 => MremapFlags,
        new_addr: u64 = 4 => Address { printed_if_set: Some((3, MREMAP_FIXED)) },
    };
    Mprotect = MPROTECT "mprotect" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
        prot: u64 = 2 => Prot,
    };
    PkeyMprotect = PKEY_MPROTECT "pkey_mprotect" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
        prot: u64 = 2 => Prot,
        pkey: i32 = 3 => Signed,
    };
    Madvise = MADVISE "madvise" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
        advice: u64 = 2 => Advice,
    };
    Mlock = MLOCK "mlock" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
    };
    Mlock2 = MLOCK2 "mlock2" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
        flags: u64 = 2 => Mlock2Flags,
    };
    Munlock = MUNLOCK "munlock" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
    };
    Mlockall = MLOCKALL "mlockall" -> Status {
        flags: u64 = 0 => MlockallFlags,
    };
    Munlockall = MUNLOCKALL "munlockall" -> Status;
    Shmat = SHMAT "shmat" -> Address {
        shmid: i32 = 0 => Signed,
        addr: u64 = 1 => Address,
        flags: u64 = 2 => ShmatFlags,
    };
    Shmdt = SHMDT "shmdt" -> Status {
        addr: u64 = 0 => Address,
    };
    /// `prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name)`; `name` is a user pointer.
    SetVmaAnonName = PRCTL "prctl" -> Status
    where option: u64 = 0 == PR_SET_VMA => PrctlOption {
        attr: u64 = 1 => VmaAttribute,
        addr: u64 = 2 => Address,
        len: u64 = 3 => Size,
        name: u64 = 4 => Address { name: "name_ptr" },
    };
    RemapFilePages = REMAP_FILE_PAGES "remap_file_pages" -> Status {
        addr: u64 = 0 => Address,
        size: u64 = 1 => Size,
        prot: u64 = 2 => Bits,
        pgoff: u64 = 3 => Decimal,
        flags: u64 = 4 => Bits,
    };
    Mbind = MBIND "mbind" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
        mode: u64 = 2 => Decimal,
        flags: u64 = 5 => Bits,
    };
    /// `ioctl(fd, UFFDIO_REGISTER, {range={start, len}, mode})`: `mode` is the
    /// UFFDIO_REGISTER_MODE_* bits.
    UffdRegister = IOCTL "ioctl" -> Status
    where request: u32 = 1 == UFFDIO_REGISTER => IoctlRequest {
        fd: i32 = 0 => Fd,
        start: u64 = 3 => Address { text_around: ("{range={start=", "") },
        len: u64 = 4 => Size { text_around: ("len=", "}") },
        mode: u64 = 5 => UffdRegisterMode { text_around: ("mode=", "}") },
    };
    /// `ioctl(fd, UFFDIO_UNREGISTER, {start, len})`.
    UffdUnregister = IOCTL "ioctl" -> Status
    where request: u32 = 1 == UFFDIO_UNREGISTER => IoctlRequest {
        fd: i32 = 0 => Fd,
        start: u64 = 3 => Address { text_around: ("{start=", "") },
        len: u64 = 4 => Size { text_around: ("len=", "}") },
    };
    MapShadowStack = MAP_SHADOW_STACK "map_shadow_stack" -> Address {
        addr: u64 = 0 => Address,
        size: u64 = 1 => Size,
        flags: u64 = 2 => Bits,
    };
    Mseal = MSEAL "mseal" -> Status {
        addr: u64 = 0 => Address,
        len: u64 = 1 => Size,
        flags: u64 = 2 => Bits,
    };
}

impl Call {
    /// The arguments in register order, as the renderers print them.
    pub fn args(&self) -> impl Iterator<Item = Arg> {
        let mut args = [None; 6];
        let mut count = 0;
        self.for_each_arg(|arg| {
            args[count] = Some(arg);
            count += 1;
        });
        args.into_iter().flatten()
    }

    /// The argument values in register order: what a test compares with the arguments its
    /// workload passed.
    pub fn raw_args(&self) -> Vec<u64> {
        self.args().map(|arg| arg.value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_argument_is_read_from_its_register_and_given_back_in_order() {
        let [a, b, c, d, e, f] = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60];
        let uffd = UFFDIO_UNREGISTER.into();
        let cases = [
            (syscall_nr::MMAP, [a, b, c, d, e, f], vec![a, b, c, d, e, f]),
            (syscall_nr::MUNLOCKALL, [a, b, c, d, e, f], vec![]),
            // mbind's nodemask and maxnode are not kept.
            (syscall_nr::MBIND, [a, b, c, d, e, f], vec![a, b, c, f]),
            (
                syscall_nr::PRCTL,
                [PR_SET_VMA, b, c, d, e, f],
                vec![PR_SET_VMA, b, c, d, e],
            ),
            // The pointer to the struct is not kept; its fields are in slots 3 and 4.
            (
                syscall_nr::IOCTL,
                [a, uffd, c, d, e, f],
                vec![a, uffd, d, e],
            ),
            // An int is read from the low half of its register and given back sign-extended.
            (
                syscall_nr::SHMAT,
                [u64::MAX << 32 | 7, b, c, d, e, f],
                vec![7, b, c],
            ),
            (
                syscall_nr::SHMAT,
                [u32::MAX.into(), b, c, d, e, f],
                vec![u64::MAX, b, c],
            ),
        ];
        for (nr, registers, args) in cases {
            let call = Call::from_registers(nr, registers).expect("a described call");
            assert_eq!(call.raw_args(), args, "{call:?}");
        }
        assert_eq!(
            Call::from_registers(syscall_nr::PRCTL, [15, b, c, d, e, f]),
            None
        );
        assert_eq!(
            Call::from_registers(syscall_nr::IOCTL, [a, b, c, d, e, f]),
            None
        );
    }

    #[test]
    fn arguments_come_in_register_order_with_selectors_and_ints_sign_extended() {
        let call = Call::UffdRegister {
            fd: -1,
            start: 0x1000,
            len: 0x2000,
            mode: 1,
        };
        assert_eq!(
            call.raw_args(),
            [u64::MAX, UFFDIO_REGISTER.into(), 0x1000, 0x2000, 1]
        );
        let names: Vec<_> = call.args().map(|arg| arg.name).collect();
        assert_eq!(names, ["fd", "request", "start", "len", "mode"]);
        let prctl = Call::SetVmaAnonName {
            attr: 0,
            addr: 1,
            len: 2,
            name: 3,
        };
        assert_eq!(prctl.raw_args(), [PR_SET_VMA, 0, 1, 2, 3]);
        assert_eq!(prctl.args().last().map(|arg| arg.name), Some("name_ptr"));
    }

    #[test]
    fn mremap_shows_its_new_address_only_with_mremap_fixed() {
        let new_addr_shown = |flags| {
            Call::Mremap {
                old_addr: 0x1000,
                old_len: 0x1000,
                new_len: 0x2000,
                flags,
                new_addr: 0x9000,
            }
            .args()
            .find(|arg| arg.name == "new_addr")
            .map(|arg| arg.in_text)
        };
        assert_eq!(new_addr_shown(MREMAP_FIXED | 1), Some(true));
        assert_eq!(new_addr_shown(1), Some(false));
    }
}
