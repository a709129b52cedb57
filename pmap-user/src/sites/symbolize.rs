//! Names for unwound frames: blazesym reads each module's ELF symbols and DWARF (lines,
//! inlined functions) once and demangles C++ and Rust names. A stripped module is named from
//! its MiniDebugInfo (`.gnu_debugdata`, an xz-compressed ELF holding the symbol table) or from
//! its debug file when one is installed (`/usr/lib/debug/.build-id/xx/rest.debug` by build ID,
//! or by its `.gnu_debuglink` name under `/usr/lib/debug`), blazesym's default debug dirs; every location is looked up once
//! and cached, each frame allocated once and shared by every stack that shows it. Only dumps ask
//! for names, so none of this runs while events stream in.

use std::{
    borrow::Borrow,
    collections::{HashMap, HashSet},
    sync::Arc,
};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};
use serde::Serialize;

use crate::sites::{
    fold_rules,
    unwind::{FrameLoc, ModuleId, Modules},
};

/// One frame as a reader sees it. An address inside inlined code gives several frames (the
/// inlined functions innermost first, then the function they were inlined into), all marked
/// but the last.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SymbolFrame {
    /// The demangled function name, or `module+0xOFFSET` (`0xADDRESS` outside any file) when
    /// no symbol covers the address.
    pub function: String,
    /// The source file (as DWARF names it) and line, when debug info has them.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The file name of the module (`libc.so.6`), if any.
    pub module: Option<String>,
    pub inlined: bool,
}

impl SymbolFrame {
    /// `function (file:line)`, or the function alone.
    pub fn display(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{} ({}:{line})", self.function, base_name(file)),
            (Some(file), None) => format!("{} ({})", self.function, base_name(file)),
            _ => self.function.clone(),
        }
    }
}

pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The names of every location looked up so far.
#[derive(Default)]
pub struct Symbols {
    names: HashMap<FrameLoc, Box<[Arc<SymbolFrame>]>>,
    /// Modules in which some location was named.
    named_modules: HashSet<ModuleId>,
    /// The symbolizer, kept from one look-up to the next until [`Symbols::release`]: event
    /// lines name a new site at a time, and a new symbolizer each time would parse a module's
    /// DWARF again for every site (measured: the demo's run took 3x as long).
    symbolizer: Option<Symbolizer>,
}

impl Symbols {
    /// The frames at `loc` (see [`SymbolFrame`]); [`Symbols::prepare`] must have seen it.
    pub fn frames(&self, loc: &FrameLoc) -> &[Arc<SymbolFrame>] {
        &self.names[loc]
    }

    /// Whether any location of `module` looked up so far has a name: one with none has no
    /// symbols at all (stripped, no MiniDebugInfo, no debug file installed).
    pub fn has_symbols(&self, module: ModuleId) -> bool {
        self.named_modules.contains(&module)
    }

    /// Drops the symbolizer: what it caches (parsed DWARF, debug sections decompressed into
    /// memory, mapped debug files) is many times the size of the names it found, and every
    /// name found is kept here. Called after each report, so it is held between dumps only.
    pub fn release(&mut self) {
        self.symbolizer = None;
    }

    /// Looks up every location of `locs` not yet known, in one batch per module.
    pub fn prepare<'a>(&mut self, locs: impl IntoIterator<Item = &'a FrameLoc>, modules: &Modules) {
        let mut by_module: HashMap<ModuleId, Vec<u64>> = HashMap::new();
        for loc in locs {
            if self.names.contains_key(loc) {
                continue;
            }
            match *loc {
                FrameLoc::Module { module, offset } => {
                    by_module.entry(module).or_default().push(offset)
                }
                FrameLoc::Address(addr) => {
                    self.names
                        .insert(*loc, Box::new([Arc::new(bare_frame(format!("{addr:#x}")))]));
                }
                FrameLoc::CutAtStackSwitch => {
                    let frame = bare_frame(CUT_AT_STACK_SWITCH.to_string());
                    self.names.insert(*loc, Box::new([Arc::new(frame)]));
                }
            }
        }
        if by_module.is_empty() {
            return;
        }
        // The modules are read through descriptors pmap-trace holds: they cannot change under
        // it, so there is nothing to reload.
        let symbolizer = self
            .symbolizer
            .get_or_insert_with(|| Symbolizer::builder().enable_auto_reload(false).build());
        for (module, mut offsets) in by_module {
            offsets.sort_unstable();
            offsets.dedup();
            let file = modules.get(module);
            let module_name = base_name(&file.path).to_string();
            let source = Source::Elf(Elf::new(&file.open_path));
            // A module whose symbols cannot be read still gets names: module+offset.
            let found = symbolizer
                .symbolize(&source, Input::FileOffset(&offsets))
                .unwrap_or_default();
            if found.iter().any(|s| matches!(s, Symbolized::Sym(_))) {
                self.named_modules.insert(module);
            }
            for (i, &offset) in offsets.iter().enumerate() {
                let frames = match found.get(i) {
                    Some(Symbolized::Sym(sym)) => {
                        let mut frames: Vec<Arc<SymbolFrame>> = sym
                            .inlined
                            .iter()
                            .rev()
                            .map(|inlined| {
                                Arc::new(SymbolFrame {
                                    function: inlined.name.to_string(),
                                    file: inlined
                                        .code_info
                                        .as_ref()
                                        .map(|c| c.to_path().display().to_string()),
                                    line: inlined.code_info.as_ref().and_then(|c| c.line),
                                    module: Some(module_name.clone()),
                                    inlined: true,
                                })
                            })
                            .collect();
                        frames.push(Arc::new(SymbolFrame {
                            function: sym.name.to_string(),
                            file: sym
                                .code_info
                                .as_ref()
                                .map(|c| c.to_path().display().to_string()),
                            line: sym.code_info.as_ref().and_then(|c| c.line),
                            module: Some(module_name.clone()),
                            inlined: false,
                        }));
                        frames
                    }
                    _ => vec![Arc::new(SymbolFrame {
                        function: format!("{module_name}+{offset:#x}"),
                        file: None,
                        line: None,
                        module: Some(module_name.clone()),
                        inlined: false,
                    })],
                };
                self.names
                    .insert(FrameLoc::Module { module, offset }, frames.into());
            }
        }
    }
}

/// What a stack cut where a Go thread switched to its system stack shows as its last frame.
pub const CUT_AT_STACK_SWITCH: &str = "[cut: the goroutine that switched stacks was not followed]";

/// A frame known by its name alone.
fn bare_frame(function: String) -> SymbolFrame {
    SymbolFrame {
        function,
        file: None,
        line: None,
        module: None,
        inlined: false,
    }
}

/// Modules whose code is the C library, the dynamic loader or a malloc implementation: a
/// growth call inside them was made on behalf of their caller.
const ALLOCATOR_MODULES: &[&str] = &[
    "libc.so",
    "libc-2.",
    "ld-linux",
    "ld64.so",
    "libpthread",
    "libjemalloc",
    "libtcmalloc",
    "libmimalloc",
    "libstdc++.so",
    "libc++.so",
];

/// Functions, wherever they are linked, that allocate for their caller: the C allocation
/// entry points, C++ `operator new`, and Rust's global allocator and collection growth paths.
const ALLOCATOR_FUNCTIONS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "mmap",
    "mmap64",
    "__mmap",
    "mremap",
    "__mremap",
    "brk",
    "__brk",
    "sbrk",
    "__sbrk",
    "operator new",
    "__rust_alloc",
    "__rust_alloc_zeroed",
    "__rust_realloc",
    "__rdl_alloc",
    "__rdl_alloc_zeroed",
    "__rdl_realloc",
    "__rg_alloc",
    "__rg_alloc_zeroed",
    "__rg_realloc",
    "alloc::alloc::",
    "alloc::raw_vec::",
    "<alloc::alloc::Global as core::alloc::Allocator>::",
    "std::sys::alloc::",
    "std::alloc::",
    "__rustc::__rust_alloc",
    "__rustc::__rust_alloc_zeroed",
    "__rustc::__rust_realloc",
    "__rustc::__rdl_alloc",
    "__rustc::__rdl_alloc_zeroed",
    "__rustc::__rdl_realloc",
];

/// Functions of Go's runtime: its allocator (`runtime.mallocgc`, `(*mheap).grow`, `sysMap`),
/// the stack switches and map and slice growth that lead there from the program's code, and in
/// a program linked with cgo the runtime's C shims (`x_cgo_mmap`) and the wrappers of C calls
/// (`_cgo_<hash>_Cfunc_malloc`).
const GO_RUNTIME_PREFIXES: [&str; 3] = ["runtime.", "x_cgo_", "_cgo_"];

/// Whether a frame belongs to the allocator rather than to the code that wanted memory.
pub fn is_allocator_frame(frame: &SymbolFrame) -> bool {
    if frame
        .module
        .as_deref()
        .is_some_and(|module| ALLOCATOR_MODULES.iter().any(|m| module.starts_with(m)))
    {
        return true;
    }
    if fold_rules::runtime_of(&frame.function).is_some() {
        return true;
    }
    let name = frame.function.as_str();
    if GO_RUNTIME_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
    {
        return true;
    }
    ALLOCATOR_FUNCTIONS.iter().any(|known| {
        if known.ends_with("::") {
            name.starts_with(known)
        } else {
            // `operator new(unsigned long)`, `malloc@plt`-style suffixes.
            name == *known
                || name
                    .strip_prefix(known)
                    .is_some_and(|rest| rest.starts_with(['(', '@', '[']))
        }
    })
}

/// The frames a report shows: from the first frame outside the allocator on (all of them when
/// every frame is the allocator's, or with `full`).
pub fn fold<F: Borrow<SymbolFrame>>(frames: &[F], full: bool) -> &[F] {
    if full {
        return frames;
    }
    match frames.iter().position(|f| !is_allocator_frame(f.borrow())) {
        Some(first) => &frames[first..],
        None => frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, module: &str) -> SymbolFrame {
        SymbolFrame {
            function: function.into(),
            file: None,
            line: None,
            module: Some(module.into()),
            inlined: false,
        }
    }

    #[test]
    fn folds_libc_and_allocator_frames_down_to_the_first_program_frame() {
        let frames = [
            frame("__mmap", "libc.so.6"),
            frame("sysmalloc", "libc.so.6"),
            frame("__rdl_alloc", "app"),
            frame("alloc::raw_vec::RawVec<T,A>::grow_one", "app"),
            frame("app::load_table", "app"),
            frame("app::main", "app"),
            frame("__libc_start_call_main", "libc.so.6"),
        ];
        let folded = fold(&frames, false);
        assert_eq!(folded[0].function, "app::load_table");
        assert_eq!(folded.len(), 3);
        assert_eq!(fold(&frames, true).len(), frames.len());
    }

    #[test]
    fn keeps_a_stack_that_is_all_allocator_and_names_by_exact_function() {
        let loader = [frame("_dl_map_object", "ld-linux-x86-64.so.2")];
        assert_eq!(fold(&loader, false).len(), 1);
        assert!(is_allocator_frame(&frame(
            "operator new(unsigned long)",
            "app"
        )));
        assert!(is_allocator_frame(&frame("malloc", "app")));
        // A program function that merely starts like one is not the allocator.
        assert!(!is_allocator_frame(&frame("malloc_stats_report", "app")));
        assert!(!is_allocator_frame(&frame("mmap_the_file", "app")));
    }

    #[test]
    fn folds_the_go_runtime_down_to_the_first_frame_of_the_program() {
        let frames = [
            frame("__mmap64", "libc.so.6"),
            frame("x_cgo_mmap", "server"),
            frame("runtime.sysMmap", "server"),
            frame("runtime.(*mheap).grow", "server"),
            frame("runtime.systemstack", "server"),
            frame("runtime.systemstack_switch", "server"),
            frame("runtime.mallocgc", "server"),
            frame("runtime.growslice", "server"),
            frame("main.loadTable", "server"),
            frame("main.main", "server"),
            frame("runtime.main", "server"),
            frame("runtime.goexit", "server"),
        ];
        let folded = fold(&frames, false);
        assert_eq!(folded[0].function, "main.loadTable");
        assert_eq!(folded.len(), 4);
        // A package of the program whose name merely contains "runtime" is the program's.
        assert!(!is_allocator_frame(&frame("myruntime.Grow", "server")));
    }

    #[test]
    fn displays_the_base_name_of_the_source_file() {
        let mut f = frame("app::main", "app");
        f.file = Some("/src/app/src/main.rs".into());
        f.line = Some(12);
        assert_eq!(f.display(), "app::main (main.rs:12)");
        f.line = None;
        assert_eq!(f.display(), "app::main (main.rs)");
        f.file = None;
        assert_eq!(f.display(), "app::main");
    }
}
