//! Resource caps of one policy instance, enforced by wasmtime through
//! [`wasmtime::ResourceLimiter`].
//!
//! The memory cap bounds the **sum** of every linear memory of the instance
//! (a component may declare many memories across many core instances), and
//! table elements are bounded in sum too. The numbers of core instances,
//! memories and tables are small fixed constants: a component that declares
//! more is refused when it is loaded, before it can allocate anything.
//!
//! The constants were measured against the largest policy the project ships,
//! the Python example (componentize-py, about 18 MB): it instantiates 12
//! core instances, 3 memories and 3 tables, and its memories total about
//! 20 MiB after a call. The fixed counts leave room for other toolchains
//! without letting a component multiply its allocations.

/// Core instances one policy instance may create (Python needs 12).
pub const MAX_INSTANCES: usize = 32;
/// Linear memories one policy instance may create (Python needs 3).
pub const MAX_MEMORIES: usize = 8;
/// Tables one policy instance may create (Python needs 3).
pub const MAX_TABLES: usize = 8;
/// Table elements, summed over every table of the instance. An element
/// costs 8 to 16 bytes of host memory; 256 Ki elements are at most 4 MiB.
pub const MAX_TABLE_ELEMENTS: usize = 256 << 10;

/// Host-side resources (WASI streams, pollables) one instance may hold at
/// once; they live in host memory, outside the memory cap. Python holds a
/// handful.
pub const MAX_HOST_RESOURCES: usize = 1024;

/// Which cap a refused growth hit, so that the resulting trap can be
/// reported as a memory failure naming the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapHit {
    /// The sum of linear memories would pass the memory cap.
    Memory,
    /// The sum of table elements would pass [`MAX_TABLE_ELEMENTS`].
    Table,
}

/// The caps of one store and what it has allocated so far.
#[derive(Debug)]
pub struct StoreCaps {
    /// Largest sum of linear memories, in bytes.
    memory_limit: usize,
    /// Bytes of linear memory allocated across all memories of the store.
    memory_used: usize,
    /// Table elements allocated across all tables of the store.
    table_used: usize,
    /// The growth being attempted, undone if wasmtime then fails it.
    pending_memory: usize,
    pending_table: usize,
    /// Set when a growth was refused during the current call.
    pub hit: Option<CapHit>,
}

impl StoreCaps {
    /// Caps for a fresh store with a memory cap of `memory_limit` bytes.
    pub fn new(memory_limit: usize) -> Self {
        StoreCaps { memory_limit, memory_used: 0, table_used: 0, pending_memory: 0, pending_table: 0, hit: None }
    }

    /// Bytes of linear memory in use across the store.
    pub fn memory_used(&self) -> usize {
        self.memory_used
    }
}

impl wasmtime::ResourceLimiter for StoreCaps {
    // wasmtime calls this when a memory is created (current 0) and when it
    // grows; `desired` is the new size of that one memory.
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_used.saturating_add(growth);
        if total > self.memory_limit {
            self.hit = Some(CapHit::Memory);
            return Ok(false);
        }
        self.memory_used = total;
        self.pending_memory = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_used = self.memory_used.saturating_sub(std::mem::take(&mut self.pending_memory));
        tracing::debug!("policy memory growth failed after the cap allowed it: {error:#}");
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.table_used.saturating_add(growth);
        if total > MAX_TABLE_ELEMENTS {
            self.hit = Some(CapHit::Table);
            return Ok(false);
        }
        self.table_used = total;
        self.pending_table = growth;
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table_used = self.table_used.saturating_sub(std::mem::take(&mut self.pending_table));
        tracing::debug!("policy table growth failed after the cap allowed it: {error:#}");
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_cap_bounds_the_sum_of_memories() {
        let mut caps = StoreCaps::new(100);
        assert!(caps.memory_growing(0, 60, None).expect("first"));
        assert!(!caps.memory_growing(0, 60, None).expect("second memory"), "60 + 60 > 100");
        assert_eq!(caps.hit, Some(CapHit::Memory));
        assert!(caps.memory_growing(60, 100, None).expect("first grows to the cap"));
        assert_eq!(caps.memory_used(), 100);
    }

    #[test]
    fn failed_growth_is_not_counted() {
        let mut caps = StoreCaps::new(100);
        assert!(caps.memory_growing(0, 60, None).expect("grow"));
        caps.memory_grow_failed(wasmtime::Error::msg("mmap failed")).expect("undo");
        assert_eq!(caps.memory_used(), 0);
    }

    #[test]
    fn table_elements_are_bounded_in_sum() {
        let mut caps = StoreCaps::new(0);
        assert!(caps.table_growing(0, MAX_TABLE_ELEMENTS, None).expect("one table"));
        assert!(!caps.table_growing(0, 1, None).expect("another"));
        assert_eq!(caps.hit, Some(CapHit::Table));
    }
}
