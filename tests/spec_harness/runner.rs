//! The script interpreter (`Runner`): one per `.wast` file, one method per
//! directive kind, and trap-message matching (`trap_matches`).

use super::values::{
    arg_to_val, describe_error, describe_ret, describe_val, describe_vals, match_ret, one_line,
    Match,
};
use super::Outcome;
use backstop::{
    Engine, Error, Global, GlobalType, Instance, Linker, Memory, MemoryType, Module, Store, Table,
    TableType, Trap, TrapCode, Val, ValType,
};
use std::collections::HashMap;
use wast::token::Id;
use wast::{QuoteWat, WastDirective, WastExecute, WastInvoke, WastRet, Wat};

/// How a failure reason starts when a module was refused because it needs
/// GC: `Runner::directive` turns such failures into `Outcome::Unsupported`.
const NEEDS_GC: &str = "refused, needs GC";

/// Whether `e` is Backstop refusing a module for needing GC.
fn needs_gc(e: &Error) -> bool {
    matches!(e, Error::Unsupported(m) if m.to_ascii_lowercase().starts_with("gc"))
}

/// Interprets one `.wast` script. Every instance it creates lives in the
/// script's one store (so `register`ed instances can be linked to later
/// modules) and stays alive until the script ends.
pub(crate) struct Runner {
    pub(crate) engine: Engine,
    /// Owns every instance of the script and the `spectest` items.
    pub(crate) store: Store<()>,
    pub(crate) linker: Linker<()>,
    /// Handles of the instances in `store`, in the order they were made.
    pub(crate) instances: Vec<Instance>,
    /// `$id` of a module → index into `instances`.
    pub(crate) named: HashMap<String, usize>,
    /// The instance unnamed `invoke`s and `register`s refer to.
    pub(crate) current: Option<usize>,
    /// Why the latest `module` directive produced no instance, if it failed.
    pub(crate) current_error: Option<String>,
    /// Why each named module that failed did (until a module of that name
    /// succeeds).
    pub(crate) failed_named: HashMap<String, String>,
    /// `(module definition $M ...)`s by name, and the latest one.
    pub(crate) definitions: HashMap<String, Module>,
    pub(crate) latest_definition: Option<Module>,
    /// Wasm 3.0 rules (`Suite::wasm3`).
    pub(crate) wasm3: bool,
}

impl Runner {
    pub(crate) fn new(engine: &Engine, wasm3: bool) -> Result<Runner, Error> {
        let mut store = Store::new(engine, ());
        let mut linker = Linker::new(engine);
        linker.allow_shadowing(true);
        define_spectest(&mut linker, &mut store)?;
        Ok(Runner {
            engine: engine.clone(),
            store,
            linker,
            instances: Vec::new(),
            named: HashMap::new(),
            current: None,
            current_error: None,
            failed_named: HashMap::new(),
            definitions: HashMap::new(),
            latest_definition: None,
            wasm3,
        })
    }

    /// Why a module failed to compile, marked with `NEEDS_GC` when that is
    /// the reason (Wasm 3.0 rules only).
    fn compile_failure(&self, context: &str, e: &Error) -> String {
        if self.wasm3 && needs_gc(e) {
            format!("{NEEDS_GC}: {context}: {}", describe_error(e))
        } else {
            format!("{context}: {}", describe_error(e))
        }
    }

    pub(crate) fn directive(&mut self, directive: WastDirective<'_>) -> Outcome {
        match self.directive_outcome(directive) {
            Outcome::Fail(reason) if reason.contains(NEEDS_GC) => Outcome::Unsupported,
            outcome => outcome,
        }
    }

    fn directive_outcome(&mut self, directive: WastDirective<'_>) -> Outcome {
        match directive {
            WastDirective::Module(module) => self.module(module),
            WastDirective::Register { name, module, .. } => self.register(name, module),
            WastDirective::Invoke(invoke) => match self.invoke(&invoke) {
                Ok(Ok(_)) => Outcome::Pass,
                Ok(Err(e)) => Outcome::Fail(format!("invoke failed: {}", describe_error(&e))),
                Err(reason) => Outcome::Fail(reason),
            },
            WastDirective::AssertReturn { exec, results, .. } => self.assert_return(exec, &results),
            WastDirective::AssertTrap { exec, message, .. } => self.assert_trap(exec, message),
            WastDirective::AssertExhaustion { call, message, .. } => {
                self.assert_exhaustion(&call, message)
            }
            WastDirective::AssertInvalid {
                module, message, ..
            } => self.assert_invalid(module, message),
            WastDirective::AssertMalformed {
                module, message, ..
            } => self.assert_malformed(module, message),
            WastDirective::AssertUnlinkable {
                module, message, ..
            } => self.assert_unlinkable(module, message),
            WastDirective::ModuleDefinition(wat) => self.module_definition(wat),
            WastDirective::ModuleInstance {
                instance, module, ..
            } => self.module_instance(instance, module),
            WastDirective::AssertException { .. } => Outcome::Skip("assert_exception".into()),
            WastDirective::Thread(_) => Outcome::Skip("thread".into()),
            WastDirective::Wait { .. } => Outcome::Skip("wait".into()),
            WastDirective::AssertSuspension { .. } => Outcome::Skip("assert_suspension".into()),
            WastDirective::AssertInvalidCustom { .. } => {
                Outcome::Skip("assert_invalid_custom".into())
            }
            WastDirective::AssertMalformedCustom { .. } => {
                Outcome::Skip("assert_malformed_custom".into())
            }
        }
    }

    // --- modules and instances ---

    /// Compiles and instantiates a module against the current registry, in
    /// the script's store.
    pub(crate) fn instantiate(&mut self, wat: &mut QuoteWat<'_>) -> Result<Instance, String> {
        let module = self.compile(wat)?;
        self.instantiate_module(&module)
    }

    /// Compiles a module of the script.
    fn compile(&mut self, wat: &mut QuoteWat<'_>) -> Result<Module, String> {
        if matches!(
            wat,
            QuoteWat::QuoteComponent(..) | QuoteWat::Wat(Wat::Component(_))
        ) {
            return Err("components are not supported".into());
        }
        let bytes = wat.encode().map_err(|e| {
            format!(
                "cannot encode the module text: {}",
                one_line(&e.to_string())
            )
        })?;
        Module::from_binary(&self.engine, &bytes)
            .map_err(|e| self.compile_failure("module failed to compile", &e))
    }

    fn instantiate_module(&mut self, module: &Module) -> Result<Instance, String> {
        self.linker
            .instantiate(&mut self.store, module)
            .map_err(|e| format!("module failed to instantiate: {}", describe_error(&e)))
    }

    /// `(module definition $M ...)`: compiled, not instantiated; `$M` (or,
    /// unnamed, the latest definition) is what `module instance` names.
    fn module_definition(&mut self, mut wat: QuoteWat<'_>) -> Outcome {
        let name = wat.name().map(|id| id.name().to_string());
        match self.compile(&mut wat) {
            Ok(module) => {
                if let Some(name) = name.clone() {
                    self.definitions.insert(name, module.clone());
                }
                self.latest_definition = Some(module);
                Outcome::Pass
            }
            Err(reason) => {
                self.latest_definition = None;
                if let Some(name) = name {
                    self.definitions.remove(&name);
                }
                Outcome::Fail(reason)
            }
        }
    }

    /// `(module instance $I $M)`: instantiates a definition; the instance
    /// becomes the current one, named `$I`.
    fn module_instance(&mut self, instance: Option<Id<'_>>, module: Option<Id<'_>>) -> Outcome {
        let definition = match module {
            Some(id) => self.definitions.get(id.name()).cloned(),
            None => self.latest_definition.clone(),
        };
        let Some(definition) = definition else {
            return Outcome::Fail("no such module definition (it failed or was never made)".into());
        };
        let name = instance.map(|id| id.name().to_string());
        let made = self.instantiate_module(&definition);
        self.make_current(name, made)
    }

    /// Makes the outcome of instantiating a module (named `name` in the
    /// script) the current instance. A failure is remembered: later
    /// directives that use the module fail with a pointer back here rather
    /// than silently running against an older instance.
    fn make_current(&mut self, name: Option<String>, made: Result<Instance, String>) -> Outcome {
        match made {
            Ok(made) => {
                let index = self.keep(made);
                self.current = Some(index);
                self.current_error = None;
                if let Some(name) = name {
                    self.failed_named.remove(&name);
                    self.named.insert(name, index);
                }
                Outcome::Pass
            }
            Err(reason) => {
                self.current = None;
                self.current_error = Some(reason.clone());
                if let Some(name) = name {
                    self.named.remove(&name);
                    self.failed_named.insert(name, reason.clone());
                }
                Outcome::Fail(reason)
            }
        }
    }

    /// Records an instance of the store (alive for the rest of the script,
    /// as the store is); returns its index.
    pub(crate) fn keep(&mut self, instance: Instance) -> usize {
        self.instances.push(instance);
        self.instances.len() - 1
    }

    pub(crate) fn module(&mut self, mut wat: QuoteWat<'_>) -> Outcome {
        if matches!(
            wat,
            QuoteWat::QuoteComponent(..) | QuoteWat::Wat(Wat::Component(_))
        ) {
            return Outcome::Skip("component".into());
        }
        let name = wat.name().map(|id| id.name().to_string());
        let made = self.instantiate(&mut wat);
        self.make_current(name, made)
    }

    /// The instance `$id` names, or the current one.
    pub(crate) fn instance_index(&self, id: Option<Id<'_>>) -> Result<usize, String> {
        match id {
            Some(id) => self.named.get(id.name()).copied().ok_or_else(|| {
                match self.failed_named.get(id.name()) {
                    Some(e) => format!("module ${} failed ({e})", id.name()),
                    None => format!("no module named ${} (never defined)", id.name()),
                }
            }),
            None => self.current.ok_or_else(|| match &self.current_error {
                Some(e) => format!("no current module: the last module failed ({e})"),
                None => "no current module".to_string(),
            }),
        }
    }

    pub(crate) fn register(&mut self, name: &str, id: Option<Id<'_>>) -> Outcome {
        let index = match self.instance_index(id) {
            Ok(i) => i,
            Err(reason) => return Outcome::Fail(reason),
        };
        match self
            .linker
            .instance(&self.store, name, self.instances[index])
        {
            Ok(_) => Outcome::Pass,
            Err(e) => Outcome::Fail(format!("register failed: {}", describe_error(&e))),
        }
    }

    // --- execution ---

    /// Calls an export. The outer error is a harness-level problem (unknown
    /// module, unsupported argument); the inner result is the call's.
    pub(crate) fn invoke(
        &mut self,
        invoke: &WastInvoke<'_>,
    ) -> Result<Result<Vec<Val>, Error>, String> {
        let index = self.instance_index(invoke.module)?;
        let args = invoke
            .args
            .iter()
            .map(arg_to_val)
            .collect::<Result<Vec<_>, _>>()?;
        let instance = self.instances[index];
        if instance.get_func(&self.store, invoke.name).is_none() {
            return Err(format!("no exported function \"{}\"", invoke.name));
        }
        Ok(instance.call_dynamic(&mut self.store, invoke.name, &args))
    }

    /// Runs an `assert_return`/`assert_trap` action: an invoke, or a global
    /// read. Module actions are handled by the callers.
    pub(crate) fn execute(
        &mut self,
        exec: &WastExecute<'_>,
    ) -> Result<Result<Vec<Val>, Error>, String> {
        match exec {
            WastExecute::Invoke(invoke) => self.invoke(invoke),
            WastExecute::Get { module, global, .. } => {
                let index = self.instance_index(*module)?;
                match self.instances[index].get_global(&self.store, global) {
                    Some(g) => Ok(Ok(vec![g.get(&self.store)])),
                    None => Err(format!("no exported global \"{global}\"")),
                }
            }
            WastExecute::Wat(_) => Err("a module is not an action here".into()),
        }
    }

    pub(crate) fn assert_return(
        &mut self,
        exec: WastExecute<'_>,
        expected: &[WastRet<'_>],
    ) -> Outcome {
        if let WastExecute::Wat(_) = exec {
            return Outcome::Skip("assert_return of a module".into());
        }
        let results = match self.execute(&exec) {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => {
                return Outcome::Fail(format!("expected results, got {}", describe_error(&e)))
            }
            Err(reason) => return Outcome::Fail(reason),
        };
        if results.len() != expected.len() {
            return Outcome::Fail(format!(
                "expected {} results, got {}: {}",
                expected.len(),
                results.len(),
                describe_vals(&results)
            ));
        }
        for (i, (got, want)) in results.iter().zip(expected).enumerate() {
            let want = match want {
                WastRet::Core(core) => core,
                #[allow(unreachable_patterns)]
                _ => return Outcome::Skip("component result".into()),
            };
            match match_ret(got, want) {
                Match::Yes => {}
                Match::No => {
                    return Outcome::Fail(format!(
                        "result {i}: expected {}, got {}{}",
                        describe_ret(want),
                        describe_val(got),
                        if results.len() > 1 {
                            format!(" (all results: {})", describe_vals(&results))
                        } else {
                            String::new()
                        }
                    ))
                }
                Match::Unsupported(what) => return Outcome::Skip(what),
            }
        }
        Outcome::Pass
    }

    pub(crate) fn assert_trap(&mut self, exec: WastExecute<'_>, message: &str) -> Outcome {
        let result = match exec {
            WastExecute::Wat(wat) => {
                let mut wat = QuoteWat::Wat(wat);
                let bytes = match wat.encode() {
                    Ok(b) => b,
                    Err(e) => {
                        return Outcome::Fail(format!(
                            "cannot encode: {}",
                            one_line(&e.to_string())
                        ))
                    }
                };
                let module = match Module::from_binary(&self.engine, &bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        return Outcome::Fail(self.compile_failure(
                            &format!("expected instantiation to trap \"{message}\", but the module failed to compile"),
                            &e,
                        ))
                    }
                };
                match self.linker.instantiate(&mut self.store, &module) {
                    Ok(instance) => {
                        self.keep(instance);
                        return Outcome::Fail(format!(
                            "expected instantiation to trap \"{message}\", but it succeeded"
                        ));
                    }
                    Err(e) => Err(e),
                }
            }
            exec => match self.execute(&exec) {
                Ok(result) => result,
                Err(reason) => return Outcome::Fail(reason),
            },
        };
        match result {
            Ok(values) => Outcome::Fail(format!(
                "expected trap \"{message}\", got results {}",
                describe_vals(&values)
            )),
            Err(Error::Trap(trap)) if trap_matches(message, &trap) => Outcome::Pass,
            Err(Error::Trap(trap)) => Outcome::Fail(format!(
                "expected trap \"{message}\", got trap \"{}\" ({:?}; {trap})",
                trap.code().message(),
                trap.code()
            )),
            Err(e) => Outcome::Fail(format!(
                "expected trap \"{message}\", got non-trap error {}",
                describe_error(&e)
            )),
        }
    }

    pub(crate) fn assert_exhaustion(&mut self, call: &WastInvoke<'_>, message: &str) -> Outcome {
        match self.invoke(call) {
            Err(reason) => Outcome::Fail(reason),
            Ok(Ok(values)) => Outcome::Fail(format!(
                "expected exhaustion \"{message}\", got results {}",
                describe_vals(&values)
            )),
            Ok(Err(Error::Trap(trap))) if trap.code() == TrapCode::StackOverflow => Outcome::Pass,
            Ok(Err(Error::Trap(trap))) => Outcome::Fail(format!(
                "expected exhaustion (StackOverflow), got trap \"{}\" ({:?})",
                trap.code().message(),
                trap.code()
            )),
            Ok(Err(e)) => Outcome::Fail(format!(
                "expected exhaustion (StackOverflow), got non-trap error {}",
                describe_error(&e)
            )),
        }
    }

    // --- modules that must be rejected ---

    pub(crate) fn assert_invalid(&mut self, mut wat: QuoteWat<'_>, message: &str) -> Outcome {
        let bytes = match wat.encode() {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Fail(format!(
                    "assert_invalid module does not encode (harness/wast problem): {}",
                    one_line(&e.to_string())
                ))
            }
        };
        self.expect_rejected(&bytes, "invalid", message)
    }

    pub(crate) fn assert_malformed(&mut self, mut wat: QuoteWat<'_>, message: &str) -> Outcome {
        match wat.encode() {
            // The text (or binary) does not even encode: malformed, as wanted.
            Err(_) => Outcome::Pass,
            Ok(bytes) => self.expect_rejected(&bytes, "malformed", message),
        }
    }

    /// `bytes` must fail to compile with `Error::Invalid`, or with
    /// `Error::Unsupported` naming a later proposal: some modules the Wasm
    /// 2.0 suite calls invalid or malformed are valid under Wasm 3.0's
    /// proposals (a second memory, `global.get` of a defined global in a
    /// constant, a memory index where 2.0 has a zero byte), and Backstop
    /// reports those as needing the proposal.
    pub(crate) fn expect_rejected(&mut self, bytes: &[u8], kind: &str, message: &str) -> Outcome {
        match Module::from_binary(&self.engine, bytes) {
            Ok(_) => Outcome::Fail(format!(
                "{kind} module was accepted (expected \"{message}\")"
            )),
            Err(Error::Invalid(_)) => Outcome::Pass,
            Err(e) if self.wasm3 && needs_gc(&e) => {
                Outcome::Fail(self.compile_failure(&format!("{kind} module"), &e))
            }
            Err(Error::Unsupported(m))
                if !self.wasm3
                    && ["multiple memories", "GC", "typed function references"]
                        .iter()
                        .any(|proposal| m.starts_with(proposal)) =>
            {
                Outcome::Pass
            }
            Err(e) => Outcome::Fail(format!(
                "{kind} module rejected, but not as Error::Invalid (expected \"{message}\"): {}",
                describe_error(&e)
            )),
        }
    }

    pub(crate) fn assert_unlinkable(&mut self, wat: Wat<'_>, message: &str) -> Outcome {
        let mut wat = QuoteWat::Wat(wat);
        let bytes = match wat.encode() {
            Ok(b) => b,
            Err(e) => return Outcome::Fail(format!("cannot encode: {}", one_line(&e.to_string()))),
        };
        let module = match Module::from_binary(&self.engine, &bytes) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::Fail(self.compile_failure(
                    &format!(
                        "expected a link error \"{message}\", but the module failed to compile"
                    ),
                    &e,
                ))
            }
        };
        match self.linker.instantiate(&mut self.store, &module) {
            Ok(instance) => {
                self.keep(instance);
                Outcome::Fail(format!(
                    "unlinkable module was accepted (expected \"{message}\")"
                ))
            }
            Err(Error::Link(_)) => Outcome::Pass,
            Err(e) => Outcome::Fail(format!(
                "expected a link error \"{message}\", got {}",
                describe_error(&e)
            )),
        }
    }
}

/// Defines the standard `spectest` module; its memory, table and globals
/// are created in `store`, the script's store.
pub(crate) fn define_spectest(linker: &mut Linker<()>, store: &mut Store<()>) -> Result<(), Error> {
    linker.func_wrap("spectest", "print", || {})?;
    linker.func_wrap("spectest", "print_i32", |_: i32| {})?;
    linker.func_wrap("spectest", "print_i64", |_: i64| {})?;
    linker.func_wrap("spectest", "print_f32", |_: f32| {})?;
    linker.func_wrap("spectest", "print_f64", |_: f64| {})?;
    linker.func_wrap("spectest", "print_i32_f32", |_: i32, _: f32| {})?;
    linker.func_wrap("spectest", "print_f64_f64", |_: f64, _: f64| {})?;

    let globals = [
        ("global_i32", ValType::I32, Val::I32(666)),
        ("global_i64", ValType::I64, Val::I64(666)),
        ("global_f32", ValType::F32, Val::from(666.6f32)),
        ("global_f64", ValType::F64, Val::from(666.6f64)),
    ];
    for (name, content, value) in globals {
        let ty = GlobalType {
            content,
            mutable: false,
        };
        linker.define("spectest", name, Global::new(&mut *store, ty, value)?)?;
    }

    let table_ty = TableType {
        element: ValType::FuncRef,
        minimum: 10,
        maximum: Some(20),
    };
    linker.define(
        "spectest",
        "table",
        Table::new(&mut *store, table_ty, Val::FuncRef(None))?,
    )?;

    let memory_ty = MemoryType {
        minimum: 1,
        maximum: Some(2),
    };
    linker.define("spectest", "memory", Memory::new(&mut *store, memory_ty)?)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Trap messages
// ---------------------------------------------------------------------------

/// Whether a trap fits the script's expected message. Our
/// `TrapCode::message()` strings are the spec's; they are compared by
/// substring either way, and "out of bounds" variants leniently. The spec's
/// "undefined element" (index past the table's end in `call_indirect`) is
/// our out-of-bounds table access.
pub(crate) fn trap_matches(expected: &str, trap: &Trap) -> bool {
    let actual = trap.code().message();
    if expected.contains(actual) || actual.contains(expected) {
        return true;
    }
    let both = |a: &str, b: &str| expected.contains(a) && actual.contains(b);
    both("out of bounds", "out of bounds")
        || both("undefined element", "out of bounds table access")
        || both("uninitialized element", "uninitialized element")
        || both("indirect call type mismatch", "indirect call")
}

// ---------------------------------------------------------------------------
