//! The differential oracle: the same module on the `wasmi` interpreter
//! (pinned at 1.1.0, see Cargo.toml), with exactly the Wasm 2.0 features
//! on, traced as `backstop_side` traces Backstop. Only modules without
//! imports come here (`Purpose::Compare`).

use crate::trace::{self, Trace, Value};
use wasmi::{Engine, Extern, Linker, Module, Store, Val, ValType};

fn to_backstop_type(ty: &ValType) -> trace::ValType {
    match ty {
        ValType::I32 => trace::ValType::I32,
        ValType::I64 => trace::ValType::I64,
        ValType::F32 => trace::ValType::F32,
        ValType::F64 => trace::ValType::F64,
        ValType::V128 => trace::ValType::V128,
        ValType::FuncRef => trace::ValType::FuncRef,
        ValType::ExternRef => trace::ValType::ExternRef,
    }
}

fn to_val(value: Value) -> Val {
    match value {
        Value::I32(v) => Val::I32(v),
        Value::I64(v) => Val::I64(v),
        Value::F32(v) => Val::F32(wasmi::F32::from_bits(v)),
        Value::F64(v) => Val::F64(wasmi::F64::from_bits(v)),
        Value::V128(v) => Val::V128(v.into()),
        Value::FuncRef { .. } => Val::default(ValType::FuncRef),
        Value::ExternRef { .. } => Val::default(ValType::ExternRef),
    }
}

fn from_val(value: &Val) -> Value {
    match value {
        Val::I32(v) => Value::I32(*v),
        Val::I64(v) => Value::I64(*v),
        Val::F32(v) => Value::F32(v.to_bits()),
        Val::F64(v) => Value::F64(v.to_bits()),
        Val::V128(v) => Value::V128(v.as_u128()),
        Val::FuncRef(f) => Value::FuncRef { null: f.is_null() },
        Val::ExternRef(e) => Value::ExternRef { null: e.is_null() },
    }
}

fn engine() -> Engine {
    let mut config = wasmi::Config::default();
    config
        .wasm_mutable_global(true)
        .wasm_sign_extension(true)
        .wasm_saturating_float_to_int(true)
        .wasm_multi_value(true)
        .wasm_bulk_memory(true)
        .wasm_reference_types(true)
        .wasm_simd(true)
        .wasm_multi_memory(true)
        .wasm_tail_call(false)
        .wasm_extended_const(true)
        .wasm_custom_page_sizes(false)
        .wasm_memory64(false)
        .wasm_wide_arithmetic(false)
        .wasm_relaxed_simd(false)
        // Deep enough that fuel, not the interpreter's stack, ends a
        // recursion Backstop's stack survives.
        .set_max_recursion_depth(100_000);
    Engine::new(&config)
}

fn error_line(error: &wasmi::Error) -> String {
    if let Some(code) = error.as_trap_code() {
        return trace::trapped(code);
    }
    // wasmi 1.1 reports a segment that does not fit at instantiation as an
    // instantiation error, not a trap; the spec (and Backstop) call it a
    // trap. Same behaviour, other words: fuzz/regressions keeps the case.
    let message = error.to_string();
    if message.starts_with("out of bounds table access") {
        trace::trapped(wasmi::TrapCode::TableOutOfBounds)
    } else if message.starts_with("out of bounds memory access") {
        trace::trapped(wasmi::TrapCode::MemoryOutOfBounds)
    } else {
        format!("error {message}")
    }
}

/// Runs `wasm` on wasmi. `exports` is the module's export list in order,
/// as Backstop reads it, so both sides call in the same order.
pub fn run(wasm: &[u8], exports: &[String]) -> Trace {
    let engine = engine();
    let mut trace = Trace::default();
    let module = match Module::new(&engine, wasm) {
        Ok(module) => module,
        Err(error) => {
            trace.inconclusive = Some(format!("wasmi refused the module: {error}"));
            return trace;
        }
    };
    let mut store = Store::new(&engine, ());
    let linker = Linker::<()>::new(&engine);
    let instance = match linker.instantiate_and_start(&mut store, &module) {
        Ok(instance) => instance,
        Err(error) => {
            if error.as_trap_code() == Some(wasmi::TrapCode::StackOverflow) {
                trace.inconclusive = Some("stack overflow while instantiating".into());
            }
            trace
                .lines
                .push(format!("instantiate: {}", error_line(&error)));
            return trace;
        }
    };
    trace.lines.push("instantiate: ok".into());
    for (call, name) in exports.iter().enumerate() {
        let Some(Extern::Func(func)) = instance.get_export(&store, name) else {
            continue;
        };
        let ty = func.ty(&store);
        let args: Vec<Value> = ty
            .params()
            .iter()
            .enumerate()
            .map(|(i, t)| trace::argument(to_backstop_type(t), call, i))
            .collect();
        let vals: Vec<Val> = args.iter().map(|v| to_val(*v)).collect();
        let mut results: Vec<Val> = ty.results().iter().map(|t| Val::default(*t)).collect();
        let outcome = match func.call(&mut store, &vals, &mut results) {
            Ok(()) => {
                let results: Vec<Value> = results.iter().map(from_val).collect();
                trace::returned(&results)
            }
            Err(error) => {
                if error.as_trap_code() == Some(wasmi::TrapCode::StackOverflow) {
                    trace.inconclusive = Some(format!("stack overflow in {name}"));
                    return trace;
                }
                error_line(&error)
            }
        };
        trace.lines.push(trace::call_line(name, &args, &outcome));
        for name in exports {
            match instance.get_export(&store, name) {
                Some(Extern::Global(global)) => {
                    let value = from_val(&global.get(&store));
                    trace.lines.push(trace::global_line(name, value));
                }
                Some(Extern::Memory(memory)) => {
                    trace
                        .lines
                        .push(trace::memory_line(name, memory.data(&store)));
                }
                Some(Extern::Table(table)) => {
                    let elements =
                        (0..table.size(&store)).map(|i| table.get(&store, i).map(|v| from_val(&v)));
                    trace.lines.push(trace::table_line(name, elements));
                }
                _ => {}
            }
        }
    }
    trace
}
