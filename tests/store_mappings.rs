//! Dropping a store frees its instances' kernel mappings. In a test binary
//! of its own, because it counts every mapping of the process and tests
//! running beside it in other threads would add theirs.

use backstop::{Engine, Linker, Module, Store};

mod common;
use common::linked::{EXPORTER, IMPORTER};
use common::mapping_count;

#[test]
fn dropping_a_store_frees_its_instances() {
    let engine = Engine::default();
    let exporter = Module::new(&engine, EXPORTER).unwrap();
    let importer = Module::new(&engine, IMPORTER).unwrap();
    let mut linker = Linker::new(&engine);
    let churn = |linker: &mut Linker<()>| {
        let mut store = Store::new(&engine, ());
        let lib = linker.instantiate(&mut store, &exporter).unwrap();
        linker.allow_shadowing(true);
        linker.instance(&store, "lib", lib).unwrap();
        let user = linker.instantiate(&mut store, &importer).unwrap();
        assert_eq!(user.call::<(), i32>(&mut store, "twice", ()).unwrap(), 2);
    };
    churn(&mut linker);
    let before = mapping_count();
    for _ in 0..200 {
        churn(&mut linker);
    }
    let after = mapping_count();
    assert!(
        after <= before + 8,
        "mappings grew from {before} to {after} over 200 stores"
    );
}
