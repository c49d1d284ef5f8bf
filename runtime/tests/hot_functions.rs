//! The runtime's hot-function list must name functions of today's release
//! build (see build-support/hot_functions_check.rs): a stale list puts the
//! code `run` runs back among the cold code, and the peak RSS of `run`
//! back from about 2 MiB to 3.5, with every other test green.

#[path = "../../build-support/hot_functions_check.rs"]
mod check;

#[test]
fn hot_functions_name_the_release_build() {
    check::assert_list_names_release_build(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        "skiff",
    );
}
