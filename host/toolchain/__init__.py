"""Guest toolchains: find a compiler that targets wasm32 and build guests with it."""
