//! At the kernel's limit on memory mappings (`vm.max_map_count`), a new
//! instance (in a new store) fails with an error that names the limit and
//! how to raise it, not with a bare "could not commit pages". Its own test
//! binary: it fills the process's mappings up to the limit for a moment,
//! which would make any other test running beside it fail.

use backstop::{Engine, Error, Linker, Module, Store};

mod common;
use common::mapping_count;

/// The tests here count or fill the process's mappings: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn running_out_of_mappings_names_vm_max_map_count() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limit = max_map_count();
    if limit > 4 << 20 {
        println!("vm.max_map_count is {limit}: too many mappings to fill in a test; skipped");
        return;
    }
    let engine = Engine::default();
    let module = Module::new(&engine, "(module (memory 1) (func (export \"f\")))").unwrap();
    let linker: Linker<()> = Linker::new(&engine);
    let page = 4096;
    // Single pages with alternating protections, so the kernel cannot
    // merge neighbours into one mapping.
    let mut pages = Vec::new();
    let mut error = None;
    while mapping_count() + 64 < limit || error.is_none() {
        for _ in 0..1024 {
            let prot = if pages.len() % 2 == 0 {
                libc::PROT_READ
            } else {
                libc::PROT_NONE
            };
            // SAFETY: a fresh anonymous mapping; nothing refers to it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                break;
            }
            pages.push(p);
        }
        if mapping_count() + 64 >= limit {
            // Each store keeps its instance's mappings until it drops.
            let mut store = Store::new(&engine, ());
            match linker.instantiate(&mut store, &module) {
                Err(e) => error = Some(e),
                Ok(_) => std::mem::forget(store),
            }
        }
        if pages.len() > limit + 10_000 {
            break;
        }
    }
    for p in pages {
        // SAFETY: each is a page this test mapped and nothing uses.
        unsafe { libc::munmap(p, page) };
    }
    match error {
        Some(Error::Resource(message)) => {
            println!("{message}");
            assert!(message.contains("vm.max_map_count"), "{message}");
            assert!(message.contains("sysctl"), "{message}");
        }
        other => panic!("expected Error::Resource naming the limit, got {other:?}"),
    }
    // With the mappings back, instantiation works again.
    let mut store = Store::new(&engine, ());
    assert!(linker.instantiate(&mut store, &module).is_ok());
}

/// How many kernel mappings a live instance with one memory costs, each in
/// a store of its own (the store holds the instance's memory, and its guest
/// stack in that memory's reservation, until it drops): the figure
/// BENCHMARKS.md and the error above quote.
#[test]
fn mappings_per_instance() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let engine = Engine::default();
    let module = Module::new(&engine, "(module (memory 1) (func (export \"f\")))").unwrap();
    let linker: Linker<()> = Linker::new(&engine);
    let new_store = || {
        let mut store = Store::new(&engine, ());
        linker.instantiate(&mut store, &module).unwrap();
        store
    };
    let _warm = new_store();
    let before = mapping_count();
    let stores: Vec<_> = (0..200).map(|_| new_store()).collect();
    let per_instance = (mapping_count() - before) as f64 / stores.len() as f64;
    println!("kernel mappings per instance: {per_instance:.2}");
    assert!(per_instance <= 3.05, "{per_instance} mappings per instance");
}

/// Live instances, each in a store of its own, until the process's address
/// space is full (each memory reserves 6 GiB of the 128 TiB): the error says
/// so, and dropping the stores makes room again.
#[test]
fn running_out_of_address_space_says_so() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let engine = Engine::default();
    let module = Module::new(&engine, "(module (memory 1) (func (export \"f\")))").unwrap();
    let linker: Linker<()> = Linker::new(&engine);
    let mut stores = Vec::new();
    let error = loop {
        let mut store = Store::new(&engine, ());
        match linker.instantiate(&mut store, &module) {
            Ok(_) => stores.push(store),
            Err(error) => break error,
        }
        assert!(stores.len() < 200_000, "no limit was reached");
    };
    println!("{} live instances, then: {error}", stores.len());
    match &error {
        Error::Resource(message) => assert!(
            message.contains("address space is full") || message.contains("vm.max_map_count"),
            "{message}"
        ),
        other => panic!("expected Error::Resource, got {other:?}"),
    }
    drop(stores);
    let mut store = Store::new(&engine, ());
    assert!(linker.instantiate(&mut store, &module).is_ok());
}
