//! Compile tests: every supported trait shape builds (and runs), and every
//! refused shape fails with the error checked in next to it.
//!
//! After changing an error message, regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p rpc-macros --test ui`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
