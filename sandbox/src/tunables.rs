//! Wasmer tunables that cap a sandbox's linear memory and record failed
//! `memory.grow`s, so the host can tell "hit its memory cap" apart from
//! other failures.

use std::cell::Cell;
use std::ptr::NonNull;

use wasmer::sys::vm::{
    LinearMemory, MemoryError, MemoryStyle, TableStyle, Trap, VMConfig, VMMemory, VMMemoryDefinition, VMTable,
    VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};

thread_local! {
    /// Failed guest `memory.grow`s on this thread since the last [`take_grow_failures`].
    /// Guest code and its `memory.grow` libcalls run on the thread that called into
    /// the instance, so a thread-local is exact and needs no lookup.
    static GROW_FAILURES: Cell<u64> = const { Cell::new(0) };
}

/// Returns and clears the number of failed `memory.grow`s on this thread.
pub fn take_grow_failures() -> u64 {
    GROW_FAILURES.with(|c| c.replace(0))
}

/// Caps every memory at `limit` pages; otherwise the default (static, 8 GiB
/// reservation) behaviour, which the overlay reset relies on.
pub struct LimitingTunables {
    limit: Pages,
    base: BaseTunables,
    vmconfig: VMConfig,
}

impl LimitingTunables {
    pub fn new(limit_bytes: u64, wasm_stack_size: Option<usize>) -> Self {
        let pages = (limit_bytes / wasmer::WASM_PAGE_SIZE as u64).min(u64::from(Pages::max_value().0));
        Self { limit: Pages(pages as u32), base: BaseTunables::new(), vmconfig: VMConfig { wasm_stack_size } }
    }

    fn adjust(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        if ty.minimum > self.limit {
            return Err(MemoryError::Generic(format!(
                "the module needs at least {} pages of memory but the cap is {} pages",
                ty.minimum.0, self.limit.0
            )));
        }
        let mut t = *ty;
        t.maximum = Some(ty.maximum.map_or(self.limit, |m| m.min(self.limit)));
        Ok(t)
    }
}

impl Tunables for LimitingTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        // Must stay `Static`: the overlay reset depends on a base pointer
        // that never moves and on PROT_NONE past the current length.
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        let inner = self.base.create_host_memory(&self.adjust(ty)?, style)?;
        Ok(VMMemory::from_custom(Box::new(TrackedMemory(inner)) as Box<dyn LinearMemory + Send + Sync>))
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        if *style != MemoryStyle::Static {
            return Err(MemoryError::Generic("the sandbox requires static memories".into()));
        }
        // SAFETY: forwarded unchanged from the caller's contract.
        let inner = unsafe { self.base.create_vm_memory(&self.adjust(ty)?, style, vm_definition_location)? };
        Ok(VMMemory::from_custom(Box::new(TrackedMemory(inner)) as Box<dyn LinearMemory + Send + Sync>))
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from the caller's contract.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        &self.vmconfig
    }
}

/// Wasmer's own memory, counting failed grows.
#[derive(Debug)]
struct TrackedMemory(VMMemory);

impl LinearMemory for TrackedMemory {
    fn ty(&self) -> MemoryType {
        self.0.ty()
    }
    fn size(&self) -> Pages {
        self.0.size()
    }
    fn style(&self) -> MemoryStyle {
        self.0.style()
    }
    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let r = self.0.grow(delta);
        if r.is_err() {
            GROW_FAILURES.with(|c| c.set(c.get() + 1));
        }
        r
    }
    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let r = self.0.grow_at_least(min_size);
        if r.is_err() {
            GROW_FAILURES.with(|c| c.set(c.get() + 1));
        }
        r
    }
    fn reset(&mut self) -> Result<(), MemoryError> {
        self.0.reset()
    }
    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.0.vmmemory()
    }
    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::try_clone(&self.0)
    }
    unsafe fn initialize_with_data(&self, start: usize, data: &[u8]) -> Result<(), Trap> {
        // SAFETY: forwarded unchanged from the caller's contract.
        unsafe { self.0.initialize_with_data(start, data) }
    }
    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::copy(&self.0)
    }
}
