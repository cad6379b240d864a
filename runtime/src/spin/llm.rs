//! `fermyon:spin/llm@2.0.0`, Spin's LLM interface. wasmpod runs no model (Spin's would need
//! model files and a GPU or minutes of CPU per answer on a node), so inferencing and
//! embeddings answer `model-not-supported`, the error Spin gives for a model it cannot serve,
//! and the log says why: a component that falls back on the error keeps working.

use wasmtime::component::{HasSelf, Linker};

use super::state::SpinState;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-llm",
        world: "wasmpod:spin-llm/spin-llm",
        imports: { default: trappable },
    });
}

use bindings::fermyon::spin::llm::{
    EmbeddingsResult, Error, Host, InferencingParams, InferencingResult,
};

/// Adds the interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    bindings::SpinLlm::add_to_linker::<SpinState, HasSelf<SpinState>>(linker, |s| s)
}

impl SpinState {
    fn no_model(&self, call: &str, model: &str) -> Error {
        eprintln!(
            "wasmpod: component {} asked for {call} with model {model:?}: wasmpod runs no \
             LLM models; the answer is model-not-supported",
            self.host.id
        );
        Error::ModelNotSupported
    }
}

impl Host for SpinState {
    fn infer(
        &mut self,
        model: String,
        _prompt: String,
        _params: Option<InferencingParams>,
    ) -> wasmtime::Result<Result<InferencingResult, Error>> {
        Ok(Err(self.no_model("inferencing", &model)))
    }

    fn generate_embeddings(
        &mut self,
        model: String,
        _text: Vec<String>,
    ) -> wasmtime::Result<Result<EmbeddingsResult, Error>> {
        Ok(Err(self.no_model("embeddings", &model)))
    }
}
