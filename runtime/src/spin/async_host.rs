//! The Spin 4 (WASIp3) interfaces wasmpod serves: `spin:key-value/key-value@3.0.0` and
//! `spin:variables/variables@3.0.0`. Their functions are `async`; each is answered from the
//! same stores, labels and variables as its Spin 2 counterpart in [`super::host`] (the
//! stores are local SQLite files, so an answer is ready when the call is made).

use std::sync::Arc;

use wasmtime::component::{
    Accessor, FutureReader, HasData, Lift, Linker, Lower, Resource, StreamReader,
};
use wasmtime::AsContextMut;

use super::kv::KvStore;
use super::state::SpinState;
use wasmpod_oci::spin::manifest::is_variable_name;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-async",
        world: "wasmpod:spin-async-host/spin-async-host",
        imports: { default: trappable },
        with: {
            "spin:key-value/key-value.store": super::OpenStore,
        },
    });
}

use bindings::spin::key_value::key_value as kv;
use bindings::spin::variables::variables as vars;

/// An open store, as a guest resource.
pub struct OpenStore(Arc<KvStore>);

/// The interfaces' view of an instance's state.
struct SpinAsync;

impl HasData for SpinAsync {
    type Data<'a> = &'a mut SpinState;
}

/// Adds the interfaces to `linker`.
pub fn add_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    kv::add_to_linker::<SpinState, SpinAsync>(linker, |s| s)?;
    vars::add_to_linker::<SpinState, SpinAsync>(linker, |s| s)?;
    Ok(())
}

/// The store behind `this`.
fn store_of<T>(
    accessor: &Accessor<T, SpinAsync>,
    this: &Resource<OpenStore>,
) -> wasmtime::Result<Arc<KvStore>> {
    accessor.with(|mut access| Ok(access.get().table.get(this)?.0.clone()))
}

impl kv::Host for SpinState {}

impl kv::HostStore for SpinState {
    fn drop(&mut self, this: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl<T> kv::HostStoreWithStore<T> for SpinAsync {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, kv::Error>> {
        accessor.with(|mut access| {
            let state = access.get();
            Ok(match state.open_store(&label) {
                Ok(store) => Ok(state.table.push(OpenStore(store))?),
                Err(super::host::OpenError::AccessDenied) => Err(kv::Error::AccessDenied),
                Err(super::host::OpenError::NoSuchStore) => Err(kv::Error::NoSuchStore),
            })
        })
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        this: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        Ok(store_of(accessor, &this)?
            .get(&key)
            .map_err(kv::Error::Other))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        this: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(store_of(accessor, &this)?
            .set(&key, &value)
            .map_err(kv::Error::Other))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        this: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(store_of(accessor, &this)?
            .delete(&key)
            .map_err(kv::Error::Other))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        this: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        Ok(store_of(accessor, &this)?
            .exists(&key)
            .map_err(kv::Error::Other))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        this: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), kv::Error>>)> {
        let (keys, end) = match store_of(accessor, &this)?.keys() {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(kv::Error::Other(e))),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let end = FutureReader::new(&mut access, async move { Ok::<_, wasmtime::Error>(end) })?;
            Ok((keys, end))
        })
    }
}

impl vars::Host for SpinState {}

impl<T> vars::HostWithStore<T> for SpinAsync {
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, vars::Error>> {
        if !is_variable_name(&name) {
            return Ok(Err(vars::Error::InvalidName(format!(
                "{name:?} is not a valid variable name"
            ))));
        }
        accessor.with(|mut access| {
            let state = access.get();
            Ok(match state.host.config.get(&name) {
                Some(v) => Ok(v.clone()),
                None => Err(vars::Error::Undefined(format!(
                    "no variable for {name:?} in component {}",
                    state.host.id
                ))),
            })
        })
    }
}
/// Rows as a Spin 4 async query returns them: a stream, and the future that says how it
/// ended.
pub type RowStream<R, E> = (StreamReader<R>, FutureReader<Result<(), E>>);

/// What a Spin 4 async query returns besides its columns: its rows, read whole, as a
/// stream, and the future that says the stream ended well.
pub fn streamed_rows<S, R, E>(mut store: S, rows: Vec<R>) -> wasmtime::Result<RowStream<R, E>>
where
    S: AsContextMut,
    R: Lower + Lift + Unpin + Send + Sync + 'static,
    E: Lower + Lift + Send + Sync + 'static,
{
    let stream = StreamReader::new(&mut store, rows)?;
    let done = FutureReader::new(&mut store, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
    Ok((stream, done))
}
