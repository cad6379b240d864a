//! The bindings of Spin's relational database interfaces: Postgres 2.0, 3.0, 4.0 and 4.2
//! ([`super::postgres`]) and MySQL 2.0 and 3.0 ([`super::mysql`]), with the 2.0 `rdbms-types` that
//! Postgres 2.0 and MySQL share; one world, so those types are one set of Rust types.

use wasmtime::component::{HasSelf, Linker};

use super::state::SpinState;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-rdbms",
        world: "wasmpod:spin-rdbms/spin-rdbms",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/postgres.connection": crate::spin::postgres::PgConnection,
            "spin:postgres/postgres@3.0.0.connection": crate::spin::postgres::PgConnection,
            "spin:postgres/postgres@4.0.0.connection": crate::spin::postgres::PgConnection,
            "spin:postgres/postgres@4.2.0.connection": crate::spin::postgres::PgConnection,
            "spin:postgres/postgres@4.2.0.connection-builder": crate::spin::postgres::PgConnectionBuilder,
            "spin:mysql/mysql@3.0.0.connection": crate::spin::mysql::MysqlConnection,
            "fermyon:spin/mysql.connection": crate::spin::mysql::MysqlConnection,
        },
    });
}

pub use bindings::fermyon::spin::{mysql, postgres as postgres2, rdbms_types as v2t};
pub use bindings::spin::mysql::mysql as mysql3;
pub use bindings::spin::postgres3_0_0::postgres as postgres3;
pub use bindings::spin::postgres4_0_0::postgres as postgres4;
pub use bindings::spin::postgres4_2_0::postgres as postgres4_2;

/// Adds every version of both to `linker`.
pub fn add_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    bindings::SpinRdbms::add_to_linker::<SpinState, HasSelf<SpinState>>(linker, |s| s)
}

impl v2t::Host for SpinState {}
