//! The host state of a guest's store, one type per workload shape, from which each host
//! interface is projected (WASI, `wasi:http`, the resource limiter). A new host interface adds
//! a field here and a view onto it; the triggers build the state and never reach into it.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::GuestLimits;

/// Store state of a core module guest.
pub struct ModuleState {
    /// WASI preview1 (and preview0).
    pub wasi: WasiP1Ctx,
    /// The store's resource limiter.
    pub limits: GuestLimits,
}

/// Store state of a component guest (a command, or one HTTP request).
pub struct ComponentState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: GuestLimits,
}

impl ComponentState {
    /// State for one instance with WASI from `wasi` and memory capped by `limits`.
    pub fn new(mut wasi: WasiCtxBuilder, limits: GuestLimits) -> ComponentState {
        ComponentState {
            ctx: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// Store state with a resource limiter.
pub trait Limited {
    /// The store's resource limiter.
    fn limits_mut(&mut self) -> &mut GuestLimits;
}

impl Limited for ModuleState {
    fn limits_mut(&mut self) -> &mut GuestLimits {
        &mut self.limits
    }
}

impl Limited for ComponentState {
    fn limits_mut(&mut self) -> &mut GuestLimits {
        &mut self.limits
    }
}
