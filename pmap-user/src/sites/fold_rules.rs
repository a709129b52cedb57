//! Language runtimes' and allocators' own frames, folded away like glibc's malloc (see
//! [`crate::sites::symbolize::fold`]): a growth call made inside them was made for the first
//! frame of the program below them. One table per runtime, so that another runtime joins with
//! one entry in [`RUNTIMES`]. The names are the ones the real programs show (checked on
//! Debian's redis, OpenJDK 17, node 20 and python3.11).

use crate::sites::symbolize::SymbolFrame;

/// The frames one runtime allocates in, by function name. A pattern ending in `*` matches
/// every name it starts (a symbol prefix such as `je_`); one ending in `::` every function
/// of that C++ namespace or class; any other the function of that name exactly (C++ names
/// with their argument list, `name@plt`, `name[...]`).
pub struct RuntimeFrames {
    pub runtime: &'static str,
    pub functions: &'static [&'static str],
}

/// jemalloc linked into the program (its shared library is folded as a module): public and
/// internal functions share its `je_` namespace; the Rust build (`tikv-jemallocator`) prefixes
/// `_rjem_`.
const JEMALLOC: RuntimeFrames = RuntimeFrames {
    runtime: "jemalloc",
    functions: &["je_*", "_rjem_*", "tikv_jemallocator::", "jemallocator::"],
};

/// gperftools' and Google's tcmalloc linked into the program: the `tc_` entry points, the
/// `tcmalloc::` namespace and gperftools' system allocator (`TCMalloc_SystemAlloc`).
const TCMALLOC: RuntimeFrames = RuntimeFrames {
    runtime: "tcmalloc",
    functions: &[
        "tc_*",
        "tcmalloc::",
        "TCMalloc_*",
        "MmapSysAllocator::",
        "DefaultSysAllocator::",
    ],
};

/// HotSpot (libjvm.so): its C heap (`os::malloc`, `AllocateHeap`, `Unsafe.allocateMemory`'s
/// native half) and its reservations of address space (`os::reserve_memory` and the platform
/// `pd_` halves, `ReservedSpace`, `VirtualSpace`); the caller is the JVM subsystem or the Java
/// code that asked.
const HOTSPOT: RuntimeFrames = RuntimeFrames {
    runtime: "JVM",
    functions: &[
        "os::malloc",
        "os::realloc",
        "os::reserve_memory*",
        "os::pd_reserve_memory*",
        "os::attempt_reserve_memory_at",
        "os::pd_attempt_reserve_memory_at",
        "os::commit_memory*",
        "os::pd_commit_memory*",
        "os::map_memory_to_file*",
        "AllocateHeap",
        "ReallocateHeap",
        "ReservedSpace::",
        "ReservedHeapSpace::",
        "ReservedCodeSpace::",
        "VirtualSpace::",
        "Unsafe_AllocateMemory0",
        "Unsafe_ReallocateMemory0",
    ],
};

/// V8 inside node: the ArrayBuffer allocator node gives V8, V8's heap, its spaces and page
/// allocators (`Heap::`, the new space a collection commits, `MemoryAllocator::`,
/// `VirtualMemory`, `PageAllocator`) and the builtins that call them for JavaScript
/// (`Builtins_*`, C++ builtins `Builtin_*`), so that a site starts at the JavaScript function
/// that allocated (named from the perf map) or the node code that did: a collection an
/// allocation set off is charged to the code that allocated.
const V8: RuntimeFrames = RuntimeFrames {
    runtime: "V8",
    functions: &[
        "node::NodeArrayBufferAllocator::",
        "node::DebuggingArrayBufferAllocator::",
        "v8::internal::Heap::",
        "v8::Isolate::AdjustAmountOfExternalAllocatedMemory",
        "v8::internal::SemiSpace::",
        "v8::internal::SemiSpaceNewSpace::",
        "v8::internal::NewSpace::",
        "v8::internal::PagedNewSpace::",
        "v8::internal::PagedSpace*",
        "v8::internal::LargeObjectSpace::",
        "v8::internal::OldLargeObjectSpace::",
        "v8::internal::NewLargeObjectSpace::",
        "v8::internal::BackingStore::",
        "v8::internal::(anonymous namespace)::ConstructBuffer",
        "v8::internal::Builtin_*",
        "v8::internal::Runtime_Allocate*",
        "v8::internal::Factory::",
        "v8::internal::FactoryBase<*",
        "v8::internal::MemoryAllocator::",
        "v8::internal::VirtualMemory::",
        "v8::internal::VirtualMemoryCage::",
        "v8::internal::AllocatePages",
        "v8::internal::IsolateAllocator::",
        "v8::internal::CodeRange::",
        "v8::base::OS::",
        "v8::base::PageAllocator::",
        "v8::base::BoundedPageAllocator::",
        "v8::base::VirtualAddressSpace::",
        "v8::base::VirtualAddressSubspace::",
        "cppgc::internal::PageBackend::",
        "cppgc::internal::PageMemoryRegion*",
        "Builtins_*",
    ],
};

/// CPython's object allocator (Objects/obmalloc.c): the `PyObject_`/`PyMem_` entry points,
/// pymalloc's pools and its arenas, which it maps with mmap (`_PyObject_ArenaMmap`).
const CPYTHON: RuntimeFrames = RuntimeFrames {
    runtime: "CPython",
    functions: &[
        "PyObject_Malloc",
        "PyObject_Calloc",
        "PyObject_Realloc",
        "_PyObject_Malloc",
        "_PyObject_Calloc",
        "_PyObject_Realloc",
        "PyMem_*",
        "_PyMem_*",
        "pymalloc_*",
        "_PyObject_Arena*",
        "new_arena",
        "allocate_from_new_pool",
    ],
};

/// Every runtime whose frames fold.
pub const RUNTIMES: &[&RuntimeFrames] = &[&JEMALLOC, &TCMALLOC, &HOTSPOT, &V8, &CPYTHON];

/// Whether `name` is a function `pattern` describes (see [`RuntimeFrames`]).
pub fn matches(pattern: &str, name: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        name.starts_with(prefix)
    } else if pattern.ends_with("::") {
        name.starts_with(pattern)
    } else {
        name.strip_prefix(pattern)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['(', '@', '[']))
    }
}

/// The runtime whose allocation path `frame` belongs to, if any.
pub fn runtime_of(frame: &SymbolFrame) -> Option<&'static str> {
    let name = frame.function.as_str();
    RUNTIMES
        .iter()
        .find(|runtime| runtime.functions.iter().any(|p| matches(p, name)))
        .map(|runtime| runtime.runtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::symbolize::fold;

    fn frame(function: &str, module: &str) -> SymbolFrame {
        SymbolFrame {
            function: function.into(),
            file: None,
            line: None,
            module: Some(module.into()),
            inlined: false,
        }
    }

    /// The first frame `fold` keeps of `stack` (innermost first), and with `--full-stacks`.
    fn first_kept(stack: &[SymbolFrame]) -> (&str, &str) {
        (
            fold(stack, false)[0].function.as_str(),
            fold(stack, true)[0].function.as_str(),
        )
    }

    #[test]
    fn patterns_match_prefixes_namespaces_and_exact_names() {
        assert!(matches("je_*", "je_malloc"));
        assert!(matches("je_*", "je_extent_alloc_wrapper"));
        assert!(!matches("je_*", "jemalloc_stats_of_the_program"));
        assert!(matches(
            "tcmalloc::",
            "tcmalloc::PageHeap::GrowHeap(unsigned long)"
        ));
        assert!(!matches("tcmalloc::", "tcmalloc_user::grow"));
        assert!(matches("os::malloc", "os::malloc(unsigned long, MEMFLAGS)"));
        assert!(matches("os::malloc", "os::malloc"));
        assert!(!matches("os::malloc", "os::malloc_info(outputStream*)"));
        assert!(matches(
            "os::pd_reserve_memory*",
            "os::pd_reserve_memory(unsigned long, bool)"
        ));
    }

    #[test]
    fn jemalloc_linked_into_the_program_folds_to_its_caller() {
        let stack = [
            frame("mmap64", "libc.so.6"),
            frame("je_pages_map", "server"),
            frame("je_extent_alloc_wrapper", "server"),
            frame("je_malloc_default", "server"),
            frame("_rjem_je_malloc_default", "server"),
            frame("zmalloc", "server"),
            frame("main", "server"),
        ];
        assert_eq!(first_kept(&stack), ("zmalloc", "mmap64"));
        assert_eq!(runtime_of(&stack[1]), Some("jemalloc"));
        assert_eq!(runtime_of(&stack[5]), None);
    }

    #[test]
    fn tcmalloc_linked_into_the_program_folds_to_its_caller() {
        let stack = [
            frame("mmap", "libc.so.6"),
            frame(
                "TCMalloc_SystemAlloc(unsigned long, unsigned long*, unsigned long)",
                "app",
            ),
            frame("tcmalloc::PageHeap::GrowHeap(unsigned long)", "app"),
            frame("tc_new", "app"),
            frame("Cache::fill()", "app"),
        ];
        assert_eq!(first_kept(&stack), ("Cache::fill()", "mmap"));
        assert_eq!(runtime_of(&stack[3]), Some("tcmalloc"));
    }

    #[test]
    fn the_jvm_reservation_and_c_heap_paths_fold_to_the_subsystem_that_asked() {
        // The compressed class space reservation, as OpenJDK 17 shows it.
        let reserve = [
            frame("__mmap", "libc.so.6"),
            frame("os::pd_reserve_memory(unsigned long, bool)", "libjvm.so"),
            frame(
                "os::reserve_memory(unsigned long, bool, MEMFLAGS)",
                "libjvm.so",
            ),
            frame(
                "ReservedSpace::reserve(unsigned long, unsigned long, unsigned long, char*, bool)",
                "libjvm.so",
            ),
            frame(
                "ReservedSpace::ReservedSpace(unsigned long, unsigned long, unsigned long, char*)",
                "libjvm.so",
            ),
            frame(
                "Metaspace::reserve_address_space_for_compressed_classes(unsigned long)",
                "libjvm.so",
            ),
        ];
        assert_eq!(
            first_kept(&reserve).0,
            "Metaspace::reserve_address_space_for_compressed_classes(unsigned long)"
        );
        let commit = [
            frame(
                "os::pd_commit_memory(char*, unsigned long, bool)",
                "libjvm.so",
            ),
            frame("os::commit_memory(char*, unsigned long, bool)", "libjvm.so"),
            frame("VirtualSpace::expand_by(unsigned long, bool)", "libjvm.so"),
            frame("CodeHeap::expand_by(unsigned long)", "libjvm.so"),
        ];
        assert_eq!(first_kept(&commit).0, "CodeHeap::expand_by(unsigned long)");
        // ByteBuffer.allocateDirect: the native half of Unsafe.allocateMemory0, then Java.
        let direct = [
            frame("malloc", "libc.so.6"),
            frame("os::malloc(unsigned long, MEMFLAGS)", "libjvm.so"),
            frame("Unsafe_AllocateMemory0", "libjvm.so"),
            frame(
                "long jdk.internal.misc.Unsafe.allocateMemory0(long)",
                "[jit]",
            ),
        ];
        assert_eq!(
            first_kept(&direct),
            (
                "long jdk.internal.misc.Unsafe.allocateMemory0(long)",
                "malloc"
            )
        );
    }

    #[test]
    fn v8_allocation_paths_fold_to_the_javascript_function() {
        // `new ArrayBuffer(n)` in node 20, as its frames read.
        let stack = [
            frame("calloc", "libc.so.6"),
            frame(
                "node::NodeArrayBufferAllocator::Allocate(unsigned long)",
                "node",
            ),
            frame(
                "v8::internal::Heap::AllocateExternalBackingStore(std::function<void* (unsigned long)> const&, unsigned long)",
                "node",
            ),
            frame(
                "v8::internal::BackingStore::Allocate(v8::internal::Isolate*, unsigned long, v8::internal::SharedFlag, v8::internal::InitializedFlag)",
                "node",
            ),
            frame(
                "v8::internal::(anonymous namespace)::ConstructBuffer(v8::internal::Isolate*, v8::internal::Handle<v8::internal::JSFunction>, v8::internal::Handle<v8::internal::JSReceiver>, v8::internal::Handle<v8::internal::Object>, v8::internal::Handle<v8::internal::Object>, v8::internal::InitializedFlag)",
                "node",
            ),
            frame(
                "v8::internal::Builtin_ArrayBufferConstructor(int, unsigned long*, v8::internal::Isolate*)",
                "node",
            ),
            frame("Builtins_CEntry_Return1_ArgvOnStack_BuiltinExit", "node"),
            frame("Builtins_JSBuiltinsConstructStub", "node"),
            frame("Builtins_ConstructHandler", "node"),
            frame("JS:~growBuffers /srv/grow.js:3:21", "[jit]"),
            frame("Builtins_InterpreterEntryTrampoline", "node"),
        ];
        assert_eq!(
            first_kept(&stack),
            ("JS:~growBuffers /srv/grow.js:3:21", "calloc")
        );
        // A collection the ArrayBuffer's external memory set off, committing the new space.
        let collection = [
            frame("v8::internal::SemiSpace::Commit()", "node"),
            frame("v8::internal::SemiSpaceNewSpace::Prologue()", "node"),
            frame(
                "v8::internal::Heap::PerformGarbageCollection(v8::internal::GarbageCollector, v8::internal::GarbageCollectionReason, char const*)",
                "node",
            ),
            frame("v8::internal::Heap::ReportExternalMemoryPressure()", "node"),
            frame(
                "v8::Isolate::AdjustAmountOfExternalAllocatedMemory(long)",
                "node",
            ),
            frame(
                "v8::internal::(anonymous namespace)::ConstructBuffer(v8::internal::Isolate*)",
                "node",
            ),
            frame("Builtins_ConstructHandler", "node"),
            frame("JS:~growBuffers /srv/grow.js:3:21", "[jit]"),
        ];
        assert_eq!(
            first_kept(&collection).0,
            "JS:~growBuffers /srv/grow.js:3:21"
        );
        // The pointer cage V8 reserves at start-up goes to the node code that set V8 up.
        let cage = [
            frame(
                "v8::base::OS::Allocate(void*, unsigned long, unsigned long, v8::base::OS::MemoryPermission)",
                "node",
            ),
            frame(
                "v8::base::VirtualAddressSpace::AllocatePages(unsigned long, unsigned long, unsigned long, v8::PagePermissions)",
                "node",
            ),
            frame(
                "v8::internal::VirtualMemoryCage::InitReservation(v8::internal::VirtualMemoryCage::ReservationParams const&, v8::base::AddressRegion)",
                "node",
            ),
            frame(
                "v8::internal::IsolateAllocator::InitializeOncePerProcess()",
                "node",
            ),
            frame("v8::V8::Initialize(int)", "node"),
        ];
        assert_eq!(first_kept(&cage).0, "v8::V8::Initialize(int)");
    }

    #[test]
    fn cpython_obmalloc_arenas_fold_to_the_interpreter_code_that_allocated() {
        let stack = [
            frame("__mmap", "libc.so.6"),
            frame("_PyObject_ArenaMmap", "python3.11"),
            frame("new_arena", "python3.11"),
            frame("allocate_from_new_pool", "python3.11"),
            frame("pymalloc_alloc", "python3.11"),
            frame("_PyObject_Malloc", "python3.11"),
            frame("PyObject_Malloc", "python3.11"),
            frame("PyFloat_FromDouble", "python3.11"),
            frame("_PyEval_EvalFrameDefault", "python3.11"),
        ];
        assert_eq!(first_kept(&stack), ("PyFloat_FromDouble", "__mmap"));
        assert_eq!(runtime_of(&stack[2]), Some("CPython"));
        assert!(matches("PyMem_*", "PyMem_RawMalloc"));
    }
}
