//! Frames below `main`: the start-up code of the C library and of language runtimes that every
//! stack of a thread ends with (`_start < __libc_start_main < ... < main`). They say nothing about
//! who grew memory, so reports leave them out unless `--full-stacks`.

use std::borrow::Borrow;

use super::symbolize::SymbolFrame;

/// The stack without the start-up frames at its outer end (innermost first, as unwound). Only
/// a run of start-up frames that reaches the outermost frame is cut: a stack cut short before
/// `_start` keeps every frame. At least the innermost frame always stays.
pub fn cut_below_main<F: Borrow<SymbolFrame>>(frames: &[F]) -> &[F] {
    let mut keep = frames.len();
    while keep > 1 && is_below_main(frames, keep - 1) {
        keep -= 1;
    }
    &frames[..keep]
}

/// Whether `frames[at]` is start-up code: the C library's and the runtimes' entry points, or a
/// C `main` that only starts a runtime (Rust's generated `main` calls `std::rt::lang_start`).
fn is_below_main<F: Borrow<SymbolFrame>>(frames: &[F], at: usize) -> bool {
    let function = frames[at].borrow().function.as_str();
    if function == "main" {
        return at
            .checked_sub(1)
            .is_some_and(|inner| is_runtime_start(&frames[inner].borrow().function));
    }
    is_libc_start(function) || is_runtime_start(function)
}

/// The C library's entry points of the main thread (`_start` → `__libc_start_main` →
/// `__libc_start_call_main` → `main`) and of other threads (`clone3` → `start_thread`).
fn is_libc_start(function: &str) -> bool {
    matches!(
        function,
        "_start" | "__libc_start_call_main" | "start_thread" | "clone" | "clone3" | "__clone3"
    ) || function.starts_with("__libc_start_main")
}

/// Rust's start-up between the generated `main` and the program's `main`, and between a
/// thread's start and its closure: `std::rt::lang_start*`, the panic catchers, the short
/// backtrace marker and the `call_once`s that call the program's function.
fn is_runtime_start(function: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "std::rt::lang_start",
        "std::panicking::try",
        "std::panicking::catch_unwind",
        "std::panic::catch_unwind",
        "std::sys::pal::unix::thread::Thread::new::thread_start",
        "std::thread::Builder::spawn_unchecked_",
    ];
    function == "__rust_try"
        || is_go_start(function)
        || function.contains("__rust_begin_short_backtrace")
        // `FnOnce::call_once` and the blanket `impl FnOnce for &F`'s.
        || (function.starts_with("core::ops::function::") && function.ends_with("call_once"))
        || PREFIXES.iter().any(|prefix| function.starts_with(prefix))
}

/// Go's start-up: the main goroutine runs `main.main` from `runtime.main`, every goroutine
/// returns into `runtime.goexit` (src/runtime/proc.go newproc1 sets it as the caller), and a
/// thread's system stack starts at `runtime.mstart` (`runtime.rt0_go` on the first thread).
/// Assembly functions carry an `.abi0` suffix.
fn is_go_start(function: &str) -> bool {
    function == "runtime.main"
        || ["runtime.goexit", "runtime.mstart", "runtime.rt0_go"]
            .iter()
            .any(|prefix| function.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(functions: &[&str]) -> Vec<SymbolFrame> {
        functions
            .iter()
            .map(|function| SymbolFrame {
                function: function.to_string(),
                file: None,
                line: None,
                module: None,
                inlined: false,
            })
            .collect()
    }

    fn cut(functions: &[&str]) -> Vec<String> {
        cut_below_main(&frames(functions))
            .iter()
            .map(|f| f.function.clone())
            .collect()
    }

    #[test]
    fn a_c_program_keeps_main_and_loses_the_c_library_start_up() {
        // As unwound from a C program (Debian glibc 2.36).
        assert_eq!(
            cut(&[
                "grow_cache",
                "main",
                "__libc_start_call_main",
                "__libc_start_main_impl",
                "_start"
            ]),
            ["grow_cache", "main"]
        );
    }

    #[test]
    fn a_rust_program_starts_at_its_own_main() {
        // As unwound from the attribution test's target (Rust 1.95, glibc 2.36).
        let stack = [
            "attribution_target::blocks::grow",
            "attribution_target::main",
            "core::ops::function::FnOnce::call_once",
            "std::sys::backtrace::__rust_begin_short_backtrace",
            "std::rt::lang_start::{{closure}}",
            "core::ops::function::impls::<impl core::ops::function::FnOnce<A> for &F>::call_once",
            "std::panicking::try::do_call",
            "std::panicking::try",
            "std::panic::catch_unwind",
            "std::rt::lang_start_internal::{{closure}}",
            "std::panicking::try::do_call",
            "std::panicking::try",
            "std::panic::catch_unwind",
            "std::rt::lang_start_internal",
            "std::rt::lang_start",
            "main",
            "__libc_start_call_main",
            "__libc_start_main_impl",
            "_start",
        ];
        assert_eq!(
            cut(&stack),
            [
                "attribution_target::blocks::grow",
                "attribution_target::main"
            ]
        );
    }

    #[test]
    fn a_go_program_starts_at_its_goroutine_and_a_cut_stack_keeps_its_mark() {
        // As unwound from the Go test's program (Debian's go 1.19), the runtime folded.
        assert_eq!(
            cut(&[
                "main.grow",
                "main.main",
                "runtime.main",
                "runtime.goexit.abi0"
            ]),
            ["main.grow", "main.main"]
        );
        assert_eq!(
            cut(&["main.worker", "main.main.func1", "runtime.goexit.abi0"]),
            ["main.worker", "main.main.func1"]
        );
        // A stack cut at a stack switch ends with its mark: nothing below it to cut.
        let cut_stack = [
            "runtime.systemstack",
            super::super::symbolize::CUT_AT_STACK_SWITCH,
        ];
        assert_eq!(cut(&cut_stack), cut_stack);
    }

    #[test]
    fn a_thread_loses_its_start_and_a_stack_cut_short_keeps_every_frame() {
        assert_eq!(
            cut(&["worker_loop", "start_thread", "clone3"]),
            ["worker_loop"]
        );
        // The unwind stopped before the start-up: nothing to cut, even a frame named alike
        // further in.
        assert_eq!(
            cut(&["grow", "core::ops::function::FnOnce::call_once", "run"]),
            ["grow", "core::ops::function::FnOnce::call_once", "run"]
        );
        // A program's own `main` that is not a runtime's start stays.
        assert_eq!(cut(&["main", "__libc_start_call_main"]), ["main"]);
        // Never to nothing.
        assert_eq!(cut(&["_start"]), ["_start"]);
        assert!(cut(&[]).is_empty());
    }
}
