//! With the `compare` feature: generates the tonic service of the comparison
//! bench from `proto/feed.proto` (tonic-prost-build, which runs `protoc`).
//! Without it this does nothing, so the default build needs no `protoc`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "compare")]
    tonic_prost_build::compile_protos("proto/feed.proto").expect("compile proto/feed.proto");
}
