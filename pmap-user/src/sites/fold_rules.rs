//! Language runtimes' and allocators' own frames, folded away like glibc's malloc (see
//! [`crate::sites::symbolize::fold`]): a growth call made inside them was made for the first
//! frame of the program below them. One table per runtime, so that another runtime joins with
//! one entry in [`RUNTIMES`]. The names are the ones the real programs show (checked on
//! Debian's redis, OpenJDK 17, node 20 and python3.11).

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

/// The runtime whose allocation path the function `name` belongs to, if any.
pub fn runtime_of(name: &str) -> Option<&'static str> {
    RUNTIMES
        .iter()
        .find(|runtime| runtime.functions.iter().any(|p| matches(p, name)))
        .map(|runtime| runtime.runtime)
}
