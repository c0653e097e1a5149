//! Fuel metering: a compile-time middleware that charges every wasm operator
//! its cost and traps the guest once the budget is gone.
//!
//! It follows wasmer-middlewares' `Metering` (a basic block's static cost is
//! checked and subtracted at its accounting operator) with three changes the
//! sandbox needs:
//!
//! - **Weighted costs**: operators whose run time is far above one cycle
//!   (integer division, `memory.grow`, exception throws) cost more than 1, so
//!   fuel tracks time closely enough that the budget, not the wall clock,
//!   ends a runaway call.
//! - **Operand-dependent costs**: `memory.copy`, `memory.fill` and
//!   `memory.init` charge their length in bytes at run time, before they
//!   run; a 4 GiB fill is no longer one unit.
//! - **A cooperative deadline**: the remaining-fuel global is the only thing
//!   the guest checks, so the watchdog stops a call by storing 0 into it; the
//!   guest traps at its next accounting point, at a wasm instruction
//!   boundary, never inside host code (see `watchdog.rs`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type};
use wasmer_types::entity::EntityRef;

/// Export name of the remaining-fuel global (i64, unsigned).
pub const REMAINING: &str = "wasmer_metering_remaining_points";
/// Export name of the exhausted flag (i32, set to 1 just before the trap).
pub const EXHAUSTED: &str = "wasmer_metering_points_exhausted";

/// Version of the cost function below; part of the compiled-module cache key.
/// Bump it whenever a cost changes.
pub const VERSION: &str = "metering-v3:weighted(div=8,fdiv=2,call_indirect=2,grow=20000,throw=25000):\
     bulk=1/byte:init=u64::MAX";

/// Fuel per byte of `memory.copy` / `memory.fill` / `memory.init`.
/// A byte copied costs about as much time as a cheap instruction.
pub const BULK_FUEL_PER_BYTE: u64 = 1;

/// Counters of instructions the snapshot reset must not meet (tables and
/// segment state are not restored): counted while compiling, not hoped.
#[derive(Debug, Default)]
pub struct Census {
    pub table_ops: AtomicU64,
    pub segment_ops: AtomicU64,
    pub throws: AtomicU64,
    pub bulk_ops: AtomicU64,
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
        // The host unwinder walks native frames and runs the personality
        // routine for every one of them; see DESIGN.md for the measurement.
        O::Throw { .. } | O::ThrowRef | O::Rethrow { .. } => {
            census.throws.fetch_add(1, Ordering::Relaxed);
            25_000
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

#[derive(Clone, Copy, Debug)]
struct Globals {
    remaining: u32,
    exhausted: u32,
    /// Holds a bulk operation's length while its charge is computed.
    scratch: u32,
}

/// The module middleware. One per compilation (it records the global
/// indices it adds to the module).
#[derive(Debug, Default)]
pub struct Metering {
    globals: Mutex<Option<Globals>>,
    pub census: std::sync::Arc<Census>,
}

impl Metering {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ModuleMiddleware for Metering {
    fn generate_function_middleware<'a>(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let globals = self.globals.lock().unwrap_or_else(|p| p.into_inner()).expect("transform_module_info ran first");
        Box::new(FunctionMetering { globals, census: self.census.clone(), accumulated: 0 })
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
        let remaining = add(Type::I64, GlobalInit::I64Const(u64::MAX as i64), Some(REMAINING));
        let exhausted = add(Type::I32, GlobalInit::I32Const(0), Some(EXHAUSTED));
        let scratch = add(Type::I32, GlobalInit::I32Const(0), None);
        *slot = Some(Globals { remaining, exhausted, scratch });
        Ok(())
    }
}

#[derive(Debug)]
struct FunctionMetering {
    globals: Globals,
    census: std::sync::Arc<Census>,
    /// Static cost of the current basic block so far.
    accumulated: u64,
}

impl FunctionMetering {
    /// `if remaining < cost { exhausted = 1; unreachable } remaining -= cost`
    /// for the static cost accumulated so far.
    fn charge_static<'a>(&mut self, state: &mut MiddlewareReaderState<'a>) {
        if self.accumulated == 0 {
            return;
        }
        let g = self.globals;
        let c = self.accumulated as i64;
        state.extend(&[
            Operator::GlobalGet { global_index: g.remaining },
            Operator::I64Const { value: c },
            Operator::I64LtU,
            Operator::If { blockty: BlockType::Empty },
            Operator::I32Const { value: 1 },
            Operator::GlobalSet { global_index: g.exhausted },
            Operator::Unreachable,
            Operator::End,
            Operator::GlobalGet { global_index: g.remaining },
            Operator::I64Const { value: c },
            Operator::I64Sub,
            Operator::GlobalSet { global_index: g.remaining },
        ]);
        self.accumulated = 0;
    }

    /// The length operand (top of the stack, i32) is charged
    /// [`BULK_FUEL_PER_BYTE`] per byte before the bulk operation runs, and
    /// left on the stack for it.
    fn charge_length<'a>(&self, state: &mut MiddlewareReaderState<'a>) {
        let g = self.globals;
        let charge = |v: &mut Vec<Operator<'a>>| {
            v.push(Operator::GlobalGet { global_index: g.scratch });
            v.push(Operator::I64ExtendI32U);
            if BULK_FUEL_PER_BYTE != 1 {
                v.push(Operator::I64Const { value: BULK_FUEL_PER_BYTE as i64 });
                v.push(Operator::I64Mul);
            }
        };
        let mut ops =
            vec![Operator::GlobalSet { global_index: g.scratch }, Operator::GlobalGet { global_index: g.remaining }];
        charge(&mut ops);
        ops.extend([
            Operator::I64LtU,
            Operator::If { blockty: BlockType::Empty },
            Operator::I32Const { value: 1 },
            Operator::GlobalSet { global_index: g.exhausted },
            Operator::Unreachable,
            Operator::End,
            Operator::GlobalGet { global_index: g.remaining },
        ]);
        charge(&mut ops);
        ops.extend([
            Operator::I64Sub,
            Operator::GlobalSet { global_index: g.remaining },
            Operator::GlobalGet { global_index: g.scratch },
        ]);
        state.extend(&ops);
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionMetering {
    fn feed(&mut self, op: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        // The operator's own cost is added first, so an accounting operator
        // (a call, a throw) is paid for before it runs.
        self.accumulated += cost(&op, &self.census);
        match op {
            Operator::MemoryCopy { .. } | Operator::MemoryFill { .. } | Operator::MemoryInit { .. } => {
                self.charge_static(state);
                self.charge_length(state);
            }
            ref o if is_accounting(o) => self.charge_static(state),
            _ => {}
        }
        state.push_operator(op);
        Ok(())
    }
}
