//! Keeping a guest inside its container's memory limit: a store's linear memories and tables,
//! counted together, may not grow past a cap derived from `linux.resources.memory.limit`, so
//! a guest that asks for too much sees `memory.grow` fail, or its instantiation fail (with a
//! line on its stderr saying why), instead of the cgroup OOM-killing the whole process. A
//! component that instantiates many core instances, each with its own memory, is held to the
//! same cap as one big memory.

use wasmtime::ResourceLimiter;

/// Bytes counted for one table element.
const TABLE_ELEMENT_BYTES: usize = 16;

/// The part of a container's memory limit left to the guest's linear memory: the rest is
/// headroom for the runtime itself (code, stacks, WASI buffers): a quarter of the limit,
/// at least 8 MiB and at most 64 MiB.
pub fn guest_memory_cap(container_limit: u64) -> u64 {
    let headroom = (container_limit / 4).clamp(8 << 20, 64 << 20);
    container_limit.saturating_sub(headroom).max(1 << 20)
}

/// A [`ResourceLimiter`] with one cap for all of a store's memories and tables together.
#[derive(Debug, Clone)]
pub struct GuestLimits {
    cap: Option<usize>,
    /// Bytes of the store's memories and tables so far.
    used: usize,
    /// Where the cap comes from, for the message when growth is refused.
    source: &'static str,
    denied_once: bool,
}

impl GuestLimits {
    /// Limits for a container with `container_limit` bytes of memory (none: unlimited).
    pub fn for_container(container_limit: Option<u64>) -> GuestLimits {
        GuestLimits {
            cap: container_limit.map(|l| guest_memory_cap(l) as usize),
            source: "the container's memory limit",
            used: 0,
            denied_once: false,
        }
    }

    /// These limits, lowered to `instance_cap` bytes when that is set and lower (one HTTP
    /// request's instance, say).
    pub fn with_instance_cap(mut self, instance_cap: Option<u64>) -> GuestLimits {
        if let Some(cap) = instance_cap.map(|c| c as usize) {
            if self.cap.is_none_or(|current| cap < current) {
                self.cap = Some(cap);
                self.source = "the per-instance memory limit";
            }
        }
        self
    }

    /// Whether one memory or table may go from `current_bytes` to `desired_bytes`, counting
    /// all the store's others; counts it when it may.
    fn allow(&mut self, what: &str, current_bytes: usize, desired_bytes: usize) -> bool {
        let total = self
            .used
            .saturating_sub(current_bytes)
            .saturating_add(desired_bytes);
        let Some(cap) = self.cap else {
            self.used = total;
            return true;
        };
        if total <= cap {
            self.used = total;
            return true;
        }
        if !self.denied_once {
            self.denied_once = true;
            let of = if self.used > current_bytes {
                format!(
                    " ({} MiB in all with the guest's other memories and tables)",
                    total >> 20
                )
            } else {
                String::new()
            };
            eprintln!(
                "wasmpod: the guest asked to grow a {what} to {} MiB{of}, past its limit of {} \
                 MiB (from {}); the growth fails",
                desired_bytes >> 20,
                cap >> 20,
                self.source
            );
        }
        false
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.allow("linear memory", current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.allow(
            "table",
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        assert_eq!(guest_memory_cap(64 << 20), 48 << 20);
        assert_eq!(guest_memory_cap(16 << 20), 8 << 20);
        assert_eq!(guest_memory_cap(1 << 30), (1 << 30) - (64 << 20));
        assert_eq!(guest_memory_cap(4 << 20), 1 << 20);
    }

    #[test]
    fn denies_past_the_cap() {
        let mut l = GuestLimits::for_container(Some(64 << 20));
        assert!(l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(!l.memory_growing(40 << 20, 49 << 20, None).unwrap());
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert!(!l.table_growing(0, 10 << 20, None).unwrap());
        // A second memory counts with the first: 40 + 8 MiB fit the 48 MiB cap, 40 + 9 not.
        assert!(!l.memory_growing(0, 9 << 20, None).unwrap());
        assert!(l.memory_growing(0, (8 << 20) - 16_000, None).unwrap());
        let mut free = GuestLimits::for_container(None);
        assert!(free.memory_growing(0, usize::MAX, None).unwrap());
    }

    #[test]
    fn an_instance_cap_only_lowers_the_limit() {
        let mut l = GuestLimits::for_container(Some(64 << 20)).with_instance_cap(Some(8 << 20));
        assert!(!l.memory_growing(0, 9 << 20, None).unwrap());
        let mut l = GuestLimits::for_container(Some(64 << 20)).with_instance_cap(Some(1 << 30));
        assert!(l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(!l.memory_growing(0, 49 << 20, None).unwrap());
        let mut l = GuestLimits::for_container(None).with_instance_cap(Some(8 << 20));
        assert!(!l.memory_growing(0, 9 << 20, None).unwrap());
    }

    #[test]
    fn many_memories_are_held_to_one_cap() {
        use wasmtime::{Config, Engine, Module, Store};
        let mut config = Config::new();
        config.wasm_multi_memory(true);
        let engine = Engine::new(&config).unwrap();
        // Four memories of 5 MiB (80 pages each): 20 MiB, past an 8 MiB cap, though each fits.
        let module = Module::new(
            &engine,
            r#"(module (memory 80) (memory 80) (memory 80) (memory 80))"#,
        )
        .unwrap();
        let mut store = Store::new(&engine, GuestLimits::for_container(Some(16 << 20)));
        store.limiter(|l| l);
        let err = wasmtime::Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(format!("{err:?}").contains("memory"), "{err:?}");
        let mut store = Store::new(&engine, GuestLimits::for_container(Some(64 << 20)));
        store.limiter(|l| l);
        wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    }

    #[test]
    fn a_module_cannot_grow_past_the_cap() {
        use wasmtime::{Engine, Module, Store};
        let engine = Engine::default();
        let module = Module::new(
            &engine,
            r#"(module (memory (export "m") 1)
                 (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#,
        )
        .unwrap();
        let mut store = Store::new(&engine, GuestLimits::for_container(Some(16 << 20)));
        store.limiter(|l| l);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        assert_eq!(
            grow.call(&mut store, 100).unwrap(),
            1,
            "8 MiB cap: 101 pages fit"
        );
        assert_eq!(grow.call(&mut store, 100).unwrap(), -1, "201 pages do not");
    }
}
