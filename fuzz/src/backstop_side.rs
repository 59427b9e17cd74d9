//! Running a module on Backstop for a case: compile, instantiate with a
//! generated definition for every import (host functions that return
//! zeros, fresh memories, tables and globals of the asked types), call every
//! exported function with `trace::argument`s, and record a `Trace`. All of
//! the fuzzer's use of Backstop's API is here.

use crate::trace::{self, Trace, Value};
use backstop::{
    Engine, Extern, ExternType, Global, Linker, Memory, Module, Store, Table, Val, ValType,
};

fn to_val(value: Value) -> Val {
    match value {
        Value::I32(v) => Val::I32(v),
        Value::I64(v) => Val::I64(v),
        Value::F32(v) => Val::F32(v),
        Value::F64(v) => Val::F64(v),
        Value::V128(v) => Val::V128(backstop::V128(v)),
        Value::FuncRef { .. } => Val::FuncRef(None),
        Value::ExternRef { .. } => Val::ExternRef(None),
    }
}

fn from_val(value: &Val) -> Value {
    match value {
        Val::I32(v) => Value::I32(*v),
        Val::I64(v) => Value::I64(*v),
        Val::F32(v) => Value::F32(*v),
        Val::F64(v) => Value::F64(*v),
        Val::V128(v) => Value::V128(v.0),
        Val::FuncRef(f) => Value::FuncRef { null: f.is_none() },
        Val::ExternRef(e) => Value::ExternRef { null: e.is_none() },
    }
}

fn zero(ty: ValType) -> Val {
    match ty {
        ValType::I32 => Val::I32(0),
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        ValType::V128 => Val::V128(backstop::V128(0)),
        ValType::FuncRef => Val::FuncRef(None),
        ValType::ExternRef => Val::ExternRef(None),
    }
}

/// Two imports of one name with different types: a linker holds one
/// definition per name, so no embedder that links by name can instantiate
/// such a module. Not a case.
fn has_conflicting_imports(module: &Module) -> bool {
    let mut seen = std::collections::HashMap::new();
    module.imports().any(|import| {
        let ty = import.ty.clone();
        match seen.insert((import.module, import.name), import.ty) {
            Some(previous) => previous != ty,
            None => false,
        }
    })
}

/// Defines every import of `module` in a fresh linker, with the memories,
/// tables and globals made in `store`.
fn linker_for(
    engine: &Engine,
    store: &mut Store<()>,
    module: &Module,
) -> Result<Linker<()>, String> {
    let mut linker = Linker::new(engine);
    linker.allow_shadowing(true);
    for import in module.imports() {
        let definition = match import.ty {
            ExternType::Func(ty) => {
                let results: Vec<ValType> = ty.results().to_vec();
                linker
                    .func_new(&import.module, &import.name, ty, move |_, _, out| {
                        for (slot, ty) in out.iter_mut().zip(&results) {
                            *slot = zero(*ty);
                        }
                        Ok(())
                    })
                    .map_err(|e| format!("defining import {}: {e}", import.name))?;
                continue;
            }
            ExternType::Memory(ty) => {
                Extern::Memory(Memory::new(&mut *store, ty).map_err(|e| e.to_string())?)
            }
            ExternType::Table(ty) => Extern::Table(
                Table::new(&mut *store, ty, zero(ty.element)).map_err(|e| e.to_string())?,
            ),
            ExternType::Global(ty) => Extern::Global(
                Global::new(&mut *store, ty, zero(ty.content)).map_err(|e| e.to_string())?,
            ),
        };
        linker
            .define(&import.module, &import.name, definition)
            .map_err(|e| format!("defining import {}: {e}", import.name))?;
    }
    Ok(linker)
}

/// The state of every exported global, memory and table, one line each.
fn state(
    store: &Store<()>,
    instance: backstop::Instance,
    exports: &[(String, ExternType)],
    lines: &mut Vec<String>,
) {
    for (name, ty) in exports {
        match ty {
            ExternType::Global(_) => {
                let global = instance.get_global(store, name).expect("exported");
                lines.push(trace::global_line(name, from_val(&global.get(store))));
            }
            ExternType::Memory(_) => {
                let memory = instance.get_memory(store, name).expect("exported");
                lines.push(trace::memory_line(name, memory.data(store)));
            }
            ExternType::Table(_) => {
                let table = instance.get_table(store, name).expect("exported");
                let elements =
                    (0..table.size(store)).map(|i| table.get(store, i).map(|v| from_val(&v)));
                lines.push(trace::table_line(name, elements));
            }
            ExternType::Func(_) => {}
        }
    }
}

/// How a Backstop error reads in a trace (traps by code, as the oracle's).
fn error_line(error: &backstop::Error) -> String {
    match error.trap_code() {
        Some(code) => trace::trapped(code),
        None => format!("error {error}"),
    }
}

/// Runs `wasm` on `engine`. `Err` is a finding: Backstop refused a valid
/// module, or an import definition it asked for did not fit. A trace with
/// `inconclusive` set and no lines is a module that makes no case.
pub fn run(engine: &Engine, wasm: &[u8]) -> Result<Trace, String> {
    let module =
        Module::from_binary(engine, wasm).map_err(|e| format!("valid module refused: {e}"))?;
    let mut trace = Trace {
        exports: module.exports().map(|e| e.name).collect(),
        ..Trace::default()
    };
    if has_conflicting_imports(&module) {
        trace.inconclusive = Some("two imports of one name with different types".into());
        return Ok(trace);
    }
    let mut store = Store::new(engine, ());
    let linker = linker_for(engine, &mut store, &module)?;
    let instance = match linker.instantiate(&mut store, &module) {
        Ok(instance) => instance,
        Err(error) => {
            if error.trap_code() == Some(backstop::TrapCode::StackOverflow) {
                trace.inconclusive = Some("stack overflow while instantiating".into());
            } else if error.trap_code().is_none() && !matches!(error, backstop::Error::Resource(_))
            {
                return Err(format!("instantiation failed without a trap: {error}"));
            }
            trace
                .lines
                .push(format!("instantiate: {}", error_line(&error)));
            return Ok(trace);
        }
    };
    trace.lines.push("instantiate: ok".into());
    let exports: Vec<(String, ExternType)> = module.exports().map(|e| (e.name, e.ty)).collect();
    for (call, (name, ty)) in exports.iter().enumerate() {
        let ExternType::Func(ty) = ty else { continue };
        let args: Vec<Value> = ty
            .params()
            .iter()
            .enumerate()
            .map(|(i, t)| trace::argument(*t, call, i))
            .collect();
        let vals: Vec<Val> = args.iter().map(|v| to_val(*v)).collect();
        let outcome = match instance.call_dynamic(&mut store, name, &vals) {
            Ok(results) => {
                let results: Vec<Value> = results.iter().map(from_val).collect();
                trace::returned(&results)
            }
            Err(error) => {
                if error.trap_code() == Some(backstop::TrapCode::StackOverflow) {
                    trace.inconclusive = Some(format!("stack overflow in {name}"));
                    return Ok(trace);
                }
                error_line(&error)
            }
        };
        trace.lines.push(trace::call_line(name, &args, &outcome));
        state(&store, instance, &exports, &mut trace.lines);
    }
    Ok(trace)
}
