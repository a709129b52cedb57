//! The fold rules of `fold_rules.rs` as `symbolize::fold` applies them to whole stacks: each
//! runtime's allocation path folds to the first frame of the program, and `--full-stacks` keeps it.

use super::fold_rules::{matches, runtime_of};
use super::symbolize::{SymbolFrame, fold};

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
    assert_eq!(runtime_of(&stack[1].function), Some("jemalloc"));
    assert_eq!(runtime_of(&stack[5].function), None);
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
    assert_eq!(runtime_of(&stack[3].function), Some("tcmalloc"));
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
        frame("JS:growBuffers /srv/grow.js:3:21", "[jit]"),
        frame("Builtins_InterpreterEntryTrampoline", "node"),
    ];
    assert_eq!(
        first_kept(&stack),
        ("JS:growBuffers /srv/grow.js:3:21", "calloc")
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
        frame("JS:growBuffers /srv/grow.js:3:21", "[jit]"),
    ];
    assert_eq!(
        first_kept(&collection).0,
        "JS:growBuffers /srv/grow.js:3:21"
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
    assert_eq!(runtime_of(&stack[2].function), Some("CPython"));
    assert!(matches("PyMem_*", "PyMem_RawMalloc"));
}
