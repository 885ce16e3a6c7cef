"""The inference engine under the Hugging Face reasoner and the learned planner: batched decode passes
(`batching`), the KV cache they share (`kvcache`), GGUF checkpoints as Transformers models (`gguf`) and the
tiny models' tokenizer and configs (`tiny_models`)."""
