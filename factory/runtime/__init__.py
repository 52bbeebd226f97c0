"""The GGUF runtime: one way to load an exported model and answer with it, used by evaluation, the parity
check, the benchmarks and the server."""
