//! The shim's hot-function list must name functions of today's release
//! build (see build-support/hot_functions_check.rs).

#[path = "../../build-support/hot_functions_check.rs"]
mod check;

#[test]
fn map_names_symbols_not_sections() {
    let map = "\
             VMA              LMA     Size Align Out     In      Symbol
           9b860            9b860      1cf    16 .text
           9b860            9b860      1cf    16         /t/shim.o:(.text._ZN4shim5serve17h0123456789abcdefE)
           9b860            9b860      1cf     1                 _ZN4shim5serve17h0123456789abcdefE
           9ba30            9ba30       2c    16         /usr/lib/x86_64-linux-gnu/libc.a(fileops.o):(.text)
           9ba30            9ba30       2c     1                 _IO_file_close
";
    let names = check::map_names(map);
    let list =
        "_IO_file_close\n_ZN4shim5serve17h0123456789abcdefE\n_ZN4shim5serve17hfedcba9876543210E\n";
    assert_eq!(
        check::missing(list, &names),
        ["_ZN4shim5serve17hfedcba9876543210E"]
    );
}

#[test]
fn hot_functions_name_the_release_build() {
    check::assert_list_names_release_build(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        "containerd-shim-skiff",
    );
}
