//! The Spin platform interfaces wasmpod serves to components: `fermyon:spin/key-value@2.0.0`
//! and `wasi:keyvalue@0.2.0-draft2` on the app's stores ([`super::kv`]), gated by the
//! component's `key_value_stores` as Spin gates them (`access-denied` for a label it does not
//! list); `fermyon:spin/variables@2.0.0` and `wasi:config/store` on its resolved variables.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, Resource, ResourceType};

use super::kv::KvStore;
use super::state::SpinState;
use wasmpod_oci::spin::manifest::is_variable_name;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "wasmpod:spin-host/spin-host",
        imports: { default: trappable },
        with: {
            "fermyon:spin/key-value.store": super::StoreHandle,
            "wasi:keyvalue/store.bucket": super::StoreHandle,
            "wasi:keyvalue/atomics.cas": super::CasHandle,
        },
    });
}

use bindings::fermyon::spin::{key_value as spin_kv, variables as spin_vars};
use bindings::wasi::config::store as wasi_config;
use bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};

/// An open store, as a guest resource.
pub struct StoreHandle(Arc<KvStore>);

/// A compare-and-swap in progress: the key and the value it read.
pub struct CasHandle {
    store: Arc<KvStore>,
    key: String,
    seen: Option<Vec<u8>>,
}

/// Adds the interfaces to `linker`.
pub fn add_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    bindings::SpinHost::add_to_linker::<SpinState, HasSelf<SpinState>>(linker, |s| s)?;
    // `atomics` and `batch` take the store's `bucket` (`use store.{bucket}`): components
    // import it from those instances too, as the same resource type.
    for interface in [
        "wasi:keyvalue/atomics@0.2.0-draft2",
        "wasi:keyvalue/batch@0.2.0-draft2",
    ] {
        linker.instance(interface)?.resource(
            "bucket",
            ResourceType::host::<StoreHandle>(),
            |_, _| Ok(()),
        )?;
    }
    Ok(())
}

/// Why a label may not be opened.
pub(super) enum OpenError {
    AccessDenied,
    NoSuchStore,
}

impl SpinState {
    pub(super) fn open_store(&mut self, label: &str) -> Result<Arc<KvStore>, OpenError> {
        if !self.host.kv_labels.iter().any(|l| l == label) {
            return Err(OpenError::AccessDenied);
        }
        self.host.kv.get(label).ok_or(OpenError::NoSuchStore)
    }

    fn store(&self, handle: &Resource<StoreHandle>) -> wasmtime::Result<Arc<KvStore>> {
        Ok(self.table.get(handle)?.0.clone())
    }
}

impl spin_kv::Host for SpinState {}

impl spin_kv::HostStore for SpinState {
    fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, spin_kv::Error>> {
        Ok(match self.open_store(&label) {
            Ok(store) => Ok(self.table.push(StoreHandle(store))?),
            Err(OpenError::AccessDenied) => Err(spin_kv::Error::AccessDenied),
            Err(OpenError::NoSuchStore) => Err(spin_kv::Error::NoSuchStore),
        })
    }

    fn get(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, spin_kv::Error>> {
        Ok(self.store(&this)?.get(&key).map_err(spin_kv::Error::Other))
    }

    fn set(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), spin_kv::Error>> {
        Ok(self
            .store(&this)?
            .set(&key, &value)
            .map_err(spin_kv::Error::Other))
    }

    fn delete(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), spin_kv::Error>> {
        Ok(self
            .store(&this)?
            .delete(&key)
            .map_err(spin_kv::Error::Other))
    }

    fn exists(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, spin_kv::Error>> {
        Ok(self
            .store(&this)?
            .exists(&key)
            .map_err(spin_kv::Error::Other))
    }

    fn get_keys(
        &mut self,
        this: Resource<StoreHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, spin_kv::Error>> {
        Ok(self.store(&this)?.keys().map_err(spin_kv::Error::Other))
    }

    fn drop(&mut self, this: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wasi_kv::Host for SpinState {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, wasi_kv::Error>> {
        Ok(match self.open_store(&identifier) {
            Ok(store) => Ok(self.table.push(StoreHandle(store))?),
            Err(OpenError::AccessDenied) => Err(wasi_kv::Error::AccessDenied),
            Err(OpenError::NoSuchStore) => Err(wasi_kv::Error::NoSuchStore),
        })
    }
}

impl wasi_kv::HostBucket for SpinState {
    fn get(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        Ok(self.store(&this)?.get(&key).map_err(wasi_kv::Error::Other))
    }

    fn set(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        Ok(self
            .store(&this)?
            .set(&key, &value)
            .map_err(wasi_kv::Error::Other))
    }

    fn delete(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        Ok(self
            .store(&this)?
            .delete(&key)
            .map_err(wasi_kv::Error::Other))
    }

    fn exists(
        &mut self,
        this: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wasi_kv::Error>> {
        Ok(self
            .store(&this)?
            .exists(&key)
            .map_err(wasi_kv::Error::Other))
    }

    fn list_keys(
        &mut self,
        this: Resource<StoreHandle>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<wasi_kv::KeyResponse, wasi_kv::Error>> {
        if cursor.is_some() {
            return Ok(Err(wasi_kv::Error::Other(
                "list_keys: cursor not supported".into(),
            )));
        }
        Ok(self
            .store(&this)?
            .keys()
            .map(|keys| wasi_kv::KeyResponse { keys, cursor: None })
            .map_err(wasi_kv::Error::Other))
    }

    fn drop(&mut self, this: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl atomics::Host for SpinState {
    fn increment(
        &mut self,
        bucket: Resource<StoreHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, wasi_kv::Error>> {
        Ok(self
            .store(&bucket)?
            .increment(&key, delta)
            .map_err(wasi_kv::Error::Other))
    }

    fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let swapped = {
            let c = self.table.get(&cas)?;
            c.store.compare_and_swap(&c.key, c.seen.as_deref(), &value)
        };
        Ok(match swapped {
            Ok(true) => {
                self.table.delete(cas)?;
                Ok(())
            }
            Ok(false) => Err(atomics::CasError::CasFailed(cas)),
            Err(e) => {
                self.table.delete(cas)?;
                Err(atomics::CasError::StoreError(wasi_kv::Error::Other(e)))
            }
        })
    }
}

impl atomics::HostCas for SpinState {
    fn new(
        &mut self,
        bucket: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasHandle>, wasi_kv::Error>> {
        let store = self.store(&bucket)?;
        let seen = match store.get(&key) {
            Ok(v) => v,
            Err(e) => return Ok(Err(wasi_kv::Error::Other(e))),
        };
        Ok(Ok(self.table.push(CasHandle { store, key, seen })?))
    }

    fn current(
        &mut self,
        this: Resource<CasHandle>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        Ok(Ok(self.table.get(&this)?.seen.clone()))
    }

    fn drop(&mut self, this: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl batch::Host for SpinState {
    fn get_many(
        &mut self,
        bucket: Resource<StoreHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, wasi_kv::Error>> {
        let store = self.store(&bucket)?;
        let mut out = Vec::with_capacity(keys.len());
        let mut total = 0usize;
        for key in keys {
            match store.get(&key) {
                Ok(v) => {
                    total += v.as_ref().map_or(0, Vec::len);
                    if total > super::kv::MAX_RESULT_BYTES {
                        return Ok(Err(wasi_kv::Error::Other(format!(
                            "query result exceeds limit of {} bytes",
                            super::kv::MAX_RESULT_BYTES
                        ))));
                    }
                    out.push((key, v));
                }
                Err(e) => return Ok(Err(wasi_kv::Error::Other(e))),
            }
        }
        Ok(Ok(out))
    }

    fn set_many(
        &mut self,
        bucket: Resource<StoreHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        let store = self.store(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = store.set(&key, &value) {
                return Ok(Err(wasi_kv::Error::Other(e)));
            }
        }
        Ok(Ok(()))
    }

    fn delete_many(
        &mut self,
        bucket: Resource<StoreHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        let store = self.store(&bucket)?;
        for key in keys {
            if let Err(e) = store.delete(&key) {
                return Ok(Err(wasi_kv::Error::Other(e)));
            }
        }
        Ok(Ok(()))
    }
}

impl spin_vars::Host for SpinState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin_vars::Error>> {
        if !is_variable_name(&name) {
            return Ok(Err(spin_vars::Error::InvalidName(format!(
                "{name:?} is not a valid variable name"
            ))));
        }
        Ok(match self.host.config.get(&name) {
            Some(v) => Ok(v.clone()),
            None => Err(spin_vars::Error::Undefined(format!(
                "no variable for {name:?} in component {}",
                self.host.id
            ))),
        })
    }
}

impl wasi_config::Host for SpinState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(Ok(self.host.config.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        Ok(Ok(self
            .host
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
