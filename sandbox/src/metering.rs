//! Fuel metering: a compile-time middleware that charges every wasm operator
//! its cost and traps the guest once the budget is gone.
//!
//! It follows wasmer-middlewares' `Metering` (a basic block's static cost is
//! checked and subtracted at its accounting operator) with four changes the
//! sandbox needs:
//!
//! - **Weighted costs**: operators whose run time is far above one cycle
//!   (integer division, `memory.grow`, exception throws) cost more than 1, so
//!   fuel tracks time closely enough that the budget, not the wall clock,
//!   ends a runaway call.
//! - **Operand-dependent costs**: `memory.copy`, `memory.fill` and
//!   `memory.init` charge their length in bytes at run time, before they
//!   run; a 4 GiB fill is no longer one unit.
//! - **Throws charged by stack depth**: wasmer records a native backtrace of
//!   the whole stack for every exception it allocates (and keeps it for the
//!   store's life), so a throw costs time and host memory in proportion to
//!   the call depth. A call-depth counter is kept in a global only injected
//!   code touches (+1 before every call, -1 after it returns, and reset to the
//!   catching function's depth where a `try_table` catch lands), and every
//!   `throw` is charged [`THROW_FUEL_PER_FRAME`] per frame on top of its
//!   static cost. The counter can only over-count (a catch restores the depth
//!   the catching function was last entered at, never less), so a throw is
//!   never undercharged.
//! - **A cooperative deadline**: the remaining-fuel global is the only thing
//!   the guest checks, so the watchdog stops a call by storing 0 into it; the
//!   guest traps at its next accounting point, at a wasm instruction
//!   boundary, never inside host code (see `watchdog.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{self, BlockType, Catch, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type};
use wasmer_types::entity::EntityRef;

/// Export name of the remaining-fuel global (i64, unsigned).
pub const REMAINING: &str = "wasmer_metering_remaining_points";
/// Export name of the exhausted flag (i32, set to 1 just before the trap).
pub const EXHAUSTED: &str = "wasmer_metering_points_exhausted";
/// Export name of the call-depth counter (i32).
pub const DEPTH: &str = "worldloom_call_depth";
/// Export name of the sum of call depths at every throw (i64): how much
/// backtrace data wasmer has kept for this instance's exceptions.
pub const THROW_FRAMES: &str = "worldloom_throw_frames";
/// Globals the metering adds before the per-function depth slots:
/// remaining, exhausted, scratch, depth, throw frames. Only these (and the
/// module's own) need restoring between calls; a slot is always written at
/// its function's entry before it is read.
pub const RESTORED_GLOBALS: usize = 5;

/// Version of the cost function below; part of the compiled-module cache key.
/// Bump it whenever a cost or an injected sequence changes.
pub const VERSION: &str = "metering-v5:weighted(div=8,fdiv=2,call_indirect=2,grow=20000,throw=100000,\
     rethrow=25000):bulk=1/byte:throw-depth=2000/frame:init=u64::MAX";

/// Fuel per byte of `memory.copy` / `memory.fill` / `memory.init`.
/// A byte copied costs about as much time as a cheap instruction.
pub const BULK_FUEL_PER_BYTE: u64 = 1;
/// Fuel per call frame on the stack when the guest throws (the backtrace
/// wasmer records costs ~0.1 us per frame; DESIGN.md, "Exceptions").
pub const THROW_FUEL_PER_FRAME: u64 = 2_000;

/// Native frames of the host below the guest, counted into every throw's
/// backtrace estimate.
pub const HOST_FRAMES_PER_THROW: u64 = 32;

/// What the compile met, for the cache's key file and the log.
#[derive(Debug, Default)]
pub struct Census {
    /// Instructions that change table contents (the snapshot reset does not
    /// restore tables, so the interpreter must contain none).
    pub table_ops: AtomicU64,
    /// `memory.init` / `data.drop` (segment state is not restored either).
    pub segment_ops: AtomicU64,
    pub throws: AtomicU64,
    pub bulk_ops: AtomicU64,
    /// Legacy exception-handling instructions (`try`/`catch`/`delegate`),
    /// which the depth counter does not follow: compiling refuses them.
    pub legacy_eh_ops: AtomicU64,
}

/// Static fuel cost of one operator. Structural markers (`block`, `loop`,
/// `end`, `else`, `nop`) compile to no machine code and cost 0 (counting
/// them made CPython's interpreter loop, a `br_table` under ~250 nested
/// `block`s, cost ~300 fuel per bytecode); everything else costs at least 1.
pub fn cost(op: &Operator, census: &Census) -> u64 {
    use Operator as O;
    match op {
        O::Block { .. } | O::Loop { .. } | O::End | O::Else | O::Nop => 0,
        // 20-90 cycles each, against ~1 for most operators.
        O::I32DivS | O::I32DivU | O::I32RemS | O::I32RemU | O::I64DivS | O::I64DivU | O::I64RemS | O::I64RemU => 8,
        O::F32Div | O::F64Div | O::F32Sqrt | O::F64Sqrt => 2,
        O::CallIndirect { .. } => 2,
        // An mprotect system call and page-table work on the host.
        O::MemoryGrow { .. } => 20_000,
        // Allocating the exception and running the host unwinder; the
        // backtrace is charged per frame on top (THROW_FUEL_PER_FRAME).
        O::Throw { .. } => {
            census.throws.fetch_add(1, Ordering::Relaxed);
            100_000
        }
        // Re-raising a caught exception: the unwinder runs again.
        O::ThrowRef | O::Rethrow { .. } => 25_000,
        O::Try { .. } | O::Catch { .. } | O::CatchAll | O::Delegate { .. } => {
            census.legacy_eh_ops.fetch_add(1, Ordering::Relaxed);
            1
        }
        O::MemoryCopy { .. } | O::MemoryFill { .. } => {
            census.bulk_ops.fetch_add(1, Ordering::Relaxed);
            1
        }
        O::MemoryInit { .. } | O::DataDrop { .. } => {
            census.segment_ops.fetch_add(1, Ordering::Relaxed);
            1
        }
        O::TableSet { .. }
        | O::TableGrow { .. }
        | O::TableFill { .. }
        | O::TableCopy { .. }
        | O::TableInit { .. }
        | O::ElemDrop { .. } => {
            census.table_ops.fetch_add(1, Ordering::Relaxed);
            1
        }
        _ => 1,
    }
}

/// Operators that end a basic block: the accumulated static cost is checked
/// and charged right before them (as in wasmer-middlewares).
fn is_accounting(op: &Operator) -> bool {
    use Operator as O;
    matches!(
        op,
        O::Loop { .. }
            | O::End
            | O::If { .. }
            | O::Else
            | O::Br { .. }
            | O::BrTable { .. }
            | O::BrIf { .. }
            | O::Call { .. }
            | O::CallIndirect { .. }
            | O::Return
            | O::Throw { .. }
            | O::ThrowRef
            | O::Rethrow { .. }
            | O::Delegate { .. }
            | O::Catch { .. }
            | O::CatchAll
            | O::TryTable { .. }
            | O::Try { .. }
            | O::ReturnCall { .. }
            | O::ReturnCallIndirect { .. }
            | O::BrOnCast { .. }
            | O::BrOnCastFail { .. }
            | O::CallRef { .. }
            | O::ReturnCallRef { .. }
            | O::BrOnNull { .. }
            | O::BrOnNonNull { .. }
    )
}

/// The local functions (by local index) whose bodies contain a `try_table`:
/// each gets a depth slot. Found by a pass over the module before compiling.
pub fn functions_with_catches(wasm: &[u8]) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let mut local = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::CodeSectionEntry(body) = payload.map_err(|e| e.to_string())? {
            let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
            while !ops.eof() {
                if matches!(ops.read().map_err(|e| e.to_string())?, Operator::TryTable { .. }) {
                    out.push(local);
                    break;
                }
            }
            local += 1;
        }
    }
    Ok(out)
}

#[derive(Clone, Debug)]
struct Globals {
    remaining: u32,
    exhausted: u32,
    /// Holds a bulk operation's length while its charge is computed.
    scratch: u32,
    depth: u32,
    throw_frames: u32,
    /// Depth slot of each function with a catch, by local function index.
    slots: BTreeMap<u32, u32>,
}

/// The module middleware. One per compilation (it records the global
/// indices it adds to the module).
#[derive(Debug, Default)]
pub struct Metering {
    catch_functions: Vec<u32>,
    globals: Mutex<Option<std::sync::Arc<Globals>>>,
    pub census: std::sync::Arc<Census>,
}

impl Metering {
    /// `catch_functions`: see [`functions_with_catches`].
    pub fn new(catch_functions: Vec<u32>) -> Self {
        Self { catch_functions, ..Self::default() }
    }
}

impl ModuleMiddleware for Metering {
    fn generate_function_middleware<'a>(&self, f: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let globals =
            self.globals.lock().unwrap_or_else(|p| p.into_inner()).clone().expect("transform_module_info ran first");
        let slot = globals.slots.get(&(f.index() as u32)).copied();
        Box::new(FunctionMetering {
            globals,
            slot,
            census: self.census.clone(),
            accumulated: 0,
            started: false,
            frames: Vec::new(),
        })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut slot = self.globals.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Err(MiddlewareError::new("metering", "one Metering middleware per module"));
        }
        let mut add = |ty: Type, init: GlobalInit, export: Option<&str>| {
            let idx = info.globals.push(GlobalType::new(ty, Mutability::Var));
            info.global_initializers.push(init);
            if let Some(name) = export {
                info.exports.insert(name.to_string(), ExportIndex::Global(idx));
            }
            idx.index() as u32
        };
        // The order matters: these five are restored between calls (RESTORED_GLOBALS).
        let remaining = add(Type::I64, GlobalInit::I64Const(u64::MAX as i64), Some(REMAINING));
        let exhausted = add(Type::I32, GlobalInit::I32Const(0), Some(EXHAUSTED));
        let scratch = add(Type::I32, GlobalInit::I32Const(0), None);
        let depth = add(Type::I32, GlobalInit::I32Const(0), Some(DEPTH));
        let throw_frames = add(Type::I64, GlobalInit::I64Const(0), Some(THROW_FRAMES));
        let slots = self.catch_functions.iter().map(|&f| (f, add(Type::I32, GlobalInit::I32Const(0), None))).collect();
        *slot = Some(std::sync::Arc::new(Globals { remaining, exhausted, scratch, depth, throw_frames, slots }));
        Ok(())
    }
}

#[derive(Debug)]
struct FunctionMetering {
    globals: std::sync::Arc<Globals>,
    /// This function's depth slot, if it has a catch.
    slot: Option<u32>,
    census: std::sync::Arc<Census>,
    /// Static cost of the current basic block so far.
    accumulated: u64,
    started: bool,
    /// Open control frames (the function body first): whether a catch
    /// lands at the end of each.
    frames: Vec<bool>,
}

impl FunctionMetering {
    /// `if remaining < cost { exhausted = 1; unreachable } remaining -= cost`
    /// for the static cost accumulated so far.
    fn charge_static<'a>(&mut self, state: &mut MiddlewareReaderState<'a>) {
        if self.accumulated == 0 {
            return;
        }
        let c = self.accumulated as i64;
        self.accumulated = 0;
        let charge = [Operator::I64Const { value: c }];
        self.charge_dynamic(state, &charge);
    }

    /// The same check and subtraction for a cost computed at run time by
    /// `cost` (a sequence that pushes one i64 and touches nothing else).
    fn charge_dynamic<'a>(&self, state: &mut MiddlewareReaderState<'a>, cost: &[Operator<'a>]) {
        let g = &self.globals;
        let mut ops = vec![Operator::GlobalGet { global_index: g.remaining }];
        ops.extend_from_slice(cost);
        ops.extend([
            Operator::I64LtU,
            Operator::If { blockty: BlockType::Empty },
            Operator::I32Const { value: 1 },
            Operator::GlobalSet { global_index: g.exhausted },
            Operator::Unreachable,
            Operator::End,
            Operator::GlobalGet { global_index: g.remaining },
        ]);
        ops.extend_from_slice(cost);
        ops.extend([Operator::I64Sub, Operator::GlobalSet { global_index: g.remaining }]);
        state.extend(&ops);
    }

    /// `depth += delta`.
    fn bump_depth<'a>(&self, state: &mut MiddlewareReaderState<'a>, delta: i32) {
        let d = self.globals.depth;
        state.extend(&[
            Operator::GlobalGet { global_index: d },
            Operator::I32Const { value: delta },
            Operator::I32Add,
            Operator::GlobalSet { global_index: d },
        ]);
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionMetering {
    fn feed(&mut self, op: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        let g = self.globals.clone();
        if !self.started {
            self.started = true;
            self.frames.push(false);
            if let Some(slot) = self.slot {
                // The depth this activation runs at, for its catches.
                state.extend(&[
                    Operator::GlobalGet { global_index: g.depth },
                    Operator::GlobalSet { global_index: slot },
                ]);
            }
        }
        // The operator's own cost is added first, so an accounting operator
        // (a call, a throw) is paid for before it runs.
        self.accumulated += cost(&op, &self.census);
        match &op {
            Operator::MemoryCopy { .. } | Operator::MemoryFill { .. } | Operator::MemoryInit { .. } => {
                self.charge_static(state);
                // Length (top of the stack, i32) * BULK_FUEL_PER_BYTE, left
                // on the stack for the operation.
                state.extend(&[Operator::GlobalSet { global_index: g.scratch }]);
                let per_byte = BULK_FUEL_PER_BYTE as i64;
                self.charge_dynamic(
                    state,
                    &[
                        Operator::GlobalGet { global_index: g.scratch },
                        Operator::I64ExtendI32U,
                        Operator::I64Const { value: per_byte },
                        Operator::I64Mul,
                    ],
                );
                state.extend(&[Operator::GlobalGet { global_index: g.scratch }]);
                state.push_operator(op);
            }
            Operator::Throw { .. } => {
                self.charge_static(state);
                let frames = [
                    Operator::GlobalGet { global_index: g.depth },
                    Operator::I64ExtendI32U,
                    Operator::I64Const { value: THROW_FUEL_PER_FRAME as i64 },
                    Operator::I64Mul,
                ];
                self.charge_dynamic(state, &frames);
                // The backtrace also holds the host's own frames below the guest.
                state.extend(&[
                    Operator::GlobalGet { global_index: g.throw_frames },
                    Operator::GlobalGet { global_index: g.depth },
                    Operator::I64ExtendI32U,
                    Operator::I64Const { value: HOST_FRAMES_PER_THROW as i64 },
                    Operator::I64Add,
                    Operator::I64Add,
                    Operator::GlobalSet { global_index: g.throw_frames },
                ]);
                state.push_operator(op);
            }
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                self.charge_static(state);
                self.bump_depth(state, 1);
                state.push_operator(op);
                // Only reached when the callee returns (an unwind skips it:
                // the catching function restores its own depth).
                self.bump_depth(state, -1);
            }
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                if is_accounting(&op) {
                    self.charge_static(state);
                }
                self.frames.push(false);
                state.push_operator(op);
            }
            Operator::TryTable { try_table } => {
                self.charge_static(state);
                // Catch labels are relative to the frames around the try_table.
                for c in &try_table.catches {
                    let (Catch::One { label, .. }
                    | Catch::OneRef { label, .. }
                    | Catch::All { label }
                    | Catch::AllRef { label }) = c;
                    let n = self.frames.len();
                    let target = n
                        .checked_sub(1 + *label as usize)
                        .ok_or_else(|| MiddlewareError::new("metering", "a catch label outside the function"))?;
                    self.frames[target] = true;
                }
                self.frames.push(false);
                state.push_operator(op);
            }
            Operator::End => {
                self.charge_static(state);
                let lands_catch = self.frames.pop().unwrap_or(false);
                state.push_operator(op);
                if lands_catch
                    && !self.frames.is_empty()
                    && let Some(slot) = self.slot
                {
                    // A catch may have landed here after unwinding frames that
                    // never returned: back to this activation's depth.
                    state.extend(&[
                        Operator::GlobalGet { global_index: slot },
                        Operator::GlobalSet { global_index: g.depth },
                    ]);
                }
            }
            o if is_accounting(o) => {
                self.charge_static(state);
                state.push_operator(op);
            }
            _ => state.push_operator(op),
        }
        Ok(())
    }
}
