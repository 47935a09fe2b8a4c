import FERCheckpoint

/// Writes `checkpoint`'s tensors exactly as stored — the same canonical names, dtypes, shapes and
/// values, each contiguous little-endian — as a .safetensors file at `path`, so that any checkpoint
/// the runtime imports can be checked with standard tools. The checkpoint's non-tensor values go
/// into the safetensors `__metadata__`, with `source_format` and `source_structure` added.
/// (`fer-infer export FILE OUT.safetensors --raw`.)
func exportRaw(checkpoint: Checkpoint, to path: String) throws {
    var metadata = checkpoint.metadata
    if checkpoint.container != .safetensors {
        metadata["source_format"] = checkpoint.container.rawValue
        metadata["source_structure"] = checkpoint.structure
    }
    try SafeTensors.write(checkpoint.tensors, metadata: metadata, to: path)
}
