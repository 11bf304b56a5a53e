//! Context registry and the exported `proxy_on_*` callbacks.
//!
//! * `proxy_on_context_create(id, 0)` creates a root context with the
//!   factory registered by [`set_root_context`]; with a non-zero parent it
//!   asks that root's [`RootContext::create_http_context`].
//! * Every other callback is routed by context id. Unknown ids get the
//!   default answer (`Continue` / `true` / nothing).
//! * `proxy_on_delete` drops the context (its `Drop` impl runs).
//! * `proxy_on_http_call_response(root_id, token, ..)` is routed by
//!   **token**, like the public proxy-wasm Rust SDK: the spec passes the
//!   plugin (root) context id as first argument, so
//!   [`crate::hostcalls::http_call`] records token -> the context that was
//!   current when the call was dispatched ([`register_http_call`]), and the
//!   response goes to that HTTP context (or to the root context if the call
//!   was made from it / outside any callback). The entry is removed on
//!   delivery; unknown tokens (and tokens of deleted contexts) are ignored
//!   with a DEBUG log line.
//!
//! Re-entrancy: a host may call back into the guest while the guest is
//! inside a host call (e.g. run `proxy_on_log` from within `proxy_done`).
//! A context is never borrowed twice: if a callback arrives for a context
//! that is currently running, notifications (`on_log`, `on_delete`,
//! `on_tick`, `on_queue_ready`, `on_http_call_response`) are queued and
//! delivered right after the outermost callback returns; callbacks that
//! need an answer (`on_*_headers/body/trailers`, `on_done`, `on_vm_start`,
//! `on_configure`) get the default answer and a WARN log line.

use crate::hostcalls;
use crate::traits::{HttpContext, RootContext};
use crate::types::{Action, LogLevel};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

type RootFactory = Box<dyn FnMut(u32) -> Box<dyn RootContext>>;
type RootCell = Rc<RefCell<Box<dyn RootContext>>>;
type HttpCell = Rc<RefCell<Box<dyn HttpContext>>>;

enum Deferred {
    Log(u32),
    Delete(u32),
    Tick(u32),
    QueueReady(u32, u32),
    HttpCallResponse(u32, u32, usize, usize, usize),
}

struct State {
    factory: RefCell<Option<RootFactory>>,
    roots: RefCell<BTreeMap<u32, RootCell>>,
    https: RefCell<BTreeMap<u32, HttpCell>>,
    current: Cell<u32>,
    depth: Cell<u32>,
    draining: Cell<bool>,
    deferred: RefCell<VecDeque<Deferred>>,
    /// HTTP callout token -> context id that dispatched it (0 = root).
    callouts: RefCell<BTreeMap<u32, u32>>,
    vm_configuration_size: Cell<usize>,
    plugin_configuration_size: Cell<usize>,
}

impl State {
    fn new() -> State {
        State {
            factory: RefCell::new(None),
            roots: RefCell::new(BTreeMap::new()),
            https: RefCell::new(BTreeMap::new()),
            current: Cell::new(0),
            depth: Cell::new(0),
            draining: Cell::new(false),
            deferred: RefCell::new(VecDeque::new()),
            callouts: RefCell::new(BTreeMap::new()),
            vm_configuration_size: Cell::new(0),
            plugin_configuration_size: Cell::new(0),
        }
    }
}

thread_local! {
    static STATE: State = State::new();
}

/// Registers the root-context factory. Call it from `_initialize` (the
/// [`crate::main!`] macro generates that export). The factory is called
/// once per root context id. Also installs a panic hook that logs the panic
/// message at CRITICAL before the (panic=abort) trap.
pub fn set_root_context<F>(factory: F)
where
    F: FnMut(u32) -> Box<dyn RootContext> + 'static,
{
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("routeiq_guest: panic: {}", info);
        let _ = hostcalls::log(LogLevel::Critical, &msg);
    }));
    STATE.with(|s| *s.factory.borrow_mut() = Some(Box::new(factory)));
}

/// Id of the context whose callback is currently running (0 outside).
pub fn current_context_id() -> u32 {
    STATE.with(|s| s.current.get())
}

/// Records that the HTTP callout `token` was dispatched by `context_id`, so
/// that its `proxy_on_http_call_response` is delivered to that context.
/// [`crate::hostcalls::http_call`] does this automatically (with
/// [`current_context_id`]); call it yourself only after dispatching through
/// the raw [`crate::sys::proxy_http_call`]. `context_id == 0` means "the
/// root context the host names in the callback".
pub fn register_http_call(token: u32, context_id: u32) {
    STATE.with(|s| s.callouts.borrow_mut().insert(token, context_id));
}

/// Number of dispatched HTTP callouts whose response has not been delivered
/// yet (entries of contexts that were deleted are dropped with them).
pub fn pending_http_calls() -> usize {
    STATE.with(|s| s.callouts.borrow().len())
}

pub(crate) fn last_vm_configuration_size() -> usize {
    STATE.with(|s| s.vm_configuration_size.get())
}

pub(crate) fn last_plugin_configuration_size() -> usize {
    STATE.with(|s| s.plugin_configuration_size.get())
}

fn warn(msg: &str) {
    let _ = hostcalls::log(LogLevel::Warn, msg);
}

/// Runs `f` as the callback of `context_id`, then (if this was the
/// outermost callback) delivers deferred notifications.
fn run<R, F: FnOnce() -> R>(context_id: u32, f: F) -> R {
    let prev = STATE.with(|s| {
        s.depth.set(s.depth.get() + 1);
        s.current.replace(context_id)
    });
    let r = f();
    let outermost = STATE.with(|s| {
        s.current.set(prev);
        s.depth.set(s.depth.get() - 1);
        s.depth.get() == 0 && !s.draining.get()
    });
    if outermost {
        drain_deferred();
    }
    r
}

fn drain_deferred() {
    STATE.with(|s| s.draining.set(true));
    loop {
        let ev = STATE.with(|s| s.deferred.borrow_mut().pop_front());
        match ev {
            None => break,
            Some(Deferred::Log(id)) => proxy_on_log(id),
            Some(Deferred::Delete(id)) => proxy_on_delete(id),
            Some(Deferred::Tick(id)) => proxy_on_tick(id),
            Some(Deferred::QueueReady(id, q)) => proxy_on_queue_ready(id, q),
            Some(Deferred::HttpCallResponse(id, t, h, b, tr)) => deliver_http_call_response(id, t, h, b, tr),
        }
    }
    STATE.with(|s| s.draining.set(false));
}

fn defer(ev: Deferred) {
    STATE.with(|s| s.deferred.borrow_mut().push_back(ev));
}

fn root_cell(id: u32) -> Option<RootCell> {
    STATE.with(|s| s.roots.borrow().get(&id).cloned())
}

fn http_cell(id: u32) -> Option<HttpCell> {
    STATE.with(|s| s.https.borrow().get(&id).cloned())
}

/// Root context used when no factory was registered (the host did not call
/// `_initialize`, or the filter forgot `set_root_context`): it logs at
/// CRITICAL and reports failure from on_vm_start / on_configure.
struct Unregistered;

impl RootContext for Unregistered {
    fn on_vm_start(&mut self, _: usize) -> bool {
        let _ = hostcalls::log(
            LogLevel::Critical,
            "routeiq_guest: no root context registered (was _initialize exported and called?)",
        );
        false
    }
    fn on_configure(&mut self, _: usize) -> bool {
        let _ = hostcalls::log(
            LogLevel::Critical,
            "routeiq_guest: no root context registered (was _initialize exported and called?)",
        );
        false
    }
}

/// Outcome of trying to run a closure on an HTTP context.
fn on_http<R, F: FnOnce(&mut dyn HttpContext) -> R>(id: u32, default: R, name: &str, f: F) -> R {
    match http_cell(id) {
        None => default,
        Some(cell) => match cell.try_borrow_mut() {
            Ok(mut ctx) => f(&mut **ctx),
            Err(_) => {
                warn(&format!("routeiq_guest: re-entrant {} for busy context {} ignored", name, id));
                default
            }
        },
    }
}

fn on_root<R, F: FnOnce(&mut dyn RootContext) -> R>(id: u32, default: R, name: &str, f: F) -> R {
    match root_cell(id) {
        None => default,
        Some(cell) => match cell.try_borrow_mut() {
            Ok(mut ctx) => f(&mut **ctx),
            Err(_) => {
                warn(&format!("routeiq_guest: re-entrant {} for busy context {} ignored", name, id));
                default
            }
        },
    }
}

/// Is the context (root or http) currently running a callback?
fn is_busy(id: u32) -> bool {
    if let Some(c) = http_cell(id) {
        return c.try_borrow_mut().is_err();
    }
    if let Some(c) = root_cell(id) {
        return c.try_borrow_mut().is_err();
    }
    false
}

// ---------------------------------------------------------------------------
// Exported callbacks
// ---------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_context_id: u32) {
    run(context_id, || {
        if parent_context_id == 0 {
            // Take the factory out while calling it so that it may itself use
            // the SDK freely.
            let factory = STATE.with(|s| s.factory.borrow_mut().take());
            let root: Box<dyn RootContext> = match factory {
                Some(mut f) => {
                    let r = f(context_id);
                    STATE.with(|s| {
                        let mut slot = s.factory.borrow_mut();
                        if slot.is_none() {
                            *slot = Some(f);
                        }
                    });
                    r
                }
                None => Box::new(Unregistered),
            };
            STATE.with(|s| s.roots.borrow_mut().insert(context_id, Rc::new(RefCell::new(root))));
        } else {
            let created = on_root(parent_context_id, None, "create_http_context", |root| {
                root.create_http_context(context_id)
            });
            if let Some(ctx) = created {
                STATE.with(|s| s.https.borrow_mut().insert(context_id, Rc::new(RefCell::new(ctx))));
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, vm_configuration_size: usize) -> u32 {
    STATE.with(|s| s.vm_configuration_size.set(vm_configuration_size));
    run(context_id, || {
        on_root(context_id, true, "on_vm_start", |r| r.on_vm_start(vm_configuration_size)) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> u32 {
    STATE.with(|s| s.plugin_configuration_size.set(plugin_configuration_size));
    run(context_id, || {
        on_root(context_id, true, "on_configure", |r| r.on_configure(plugin_configuration_size)) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    if is_busy(context_id) {
        return defer(Deferred::Tick(context_id));
    }
    run(context_id, || on_root(context_id, (), "on_tick", |r| r.on_tick()))
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(context_id: u32, queue_id: u32) {
    if is_busy(context_id) {
        return defer(Deferred::QueueReady(context_id, queue_id));
    }
    run(context_id, || on_root(context_id, (), "on_queue_ready", |r| r.on_queue_ready(queue_id)))
}

/// `context_id` is the plugin (root) context id (spec); the host has set
/// the effective context to the context that dispatched the call. Routing
/// uses the token recorded by [`register_http_call`].
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token_id: u32,
    num_headers: usize,
    body_size: usize,
    num_trailers: usize,
) {
    // A tool (crate::tool::tool_with_callouts!) takes every response itself.
    if let Some(handler) = crate::tool::callout_handler() {
        return handler(context_id, token_id, num_headers, body_size, num_trailers);
    }
    let target = STATE.with(|s| s.callouts.borrow_mut().remove(&token_id));
    let target = match target {
        Some(0) => context_id,
        Some(id) => id,
        None => {
            let _ = hostcalls::log(
                LogLevel::Debug,
                &format!("routeiq_guest: http call response for unknown token {} ignored", token_id),
            );
            return;
        }
    };
    deliver_http_call_response(target, token_id, num_headers, body_size, num_trailers)
}

fn deliver_http_call_response(target: u32, token_id: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
    if is_busy(target) {
        return defer(Deferred::HttpCallResponse(target, token_id, num_headers, body_size, num_trailers));
    }
    if http_cell(target).is_none() && root_cell(target).is_none() {
        let _ = hostcalls::log(
            LogLevel::Debug,
            &format!("routeiq_guest: http call response {} for deleted context {} ignored", token_id, target),
        );
        return;
    }
    run(target, || {
        if http_cell(target).is_some() {
            on_http(target, (), "on_http_call_response", |c| {
                c.on_http_call_response(token_id, num_headers, body_size, num_trailers)
            })
        } else {
            on_root(target, (), "on_http_call_response", |r| {
                r.on_http_call_response(token_id, num_headers, body_size, num_trailers)
            })
        }
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, num_headers: usize, end_of_stream: u32) -> u32 {
    run(context_id, || {
        on_http(context_id, Action::Continue, "on_request_headers", |c| {
            c.on_http_request_headers(num_headers, end_of_stream != 0)
        }) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context_id: u32, body_size: usize, end_of_stream: u32) -> u32 {
    run(context_id, || {
        on_http(context_id, Action::Continue, "on_request_body", |c| {
            c.on_http_request_body(body_size, end_of_stream != 0)
        }) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, num_trailers: usize) -> u32 {
    run(context_id, || {
        on_http(context_id, Action::Continue, "on_request_trailers", |c| {
            c.on_http_request_trailers(num_trailers)
        }) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, num_headers: usize, end_of_stream: u32) -> u32 {
    run(context_id, || {
        on_http(context_id, Action::Continue, "on_response_headers", |c| {
            c.on_http_response_headers(num_headers, end_of_stream != 0)
        }) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context_id: u32, body_size: usize, end_of_stream: u32) -> u32 {
    run(context_id, || {
        on_http(context_id, Action::Continue, "on_response_body", |c| {
            c.on_http_response_body(body_size, end_of_stream != 0)
        }) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, num_trailers: usize) -> u32 {
    run(context_id, || {
        on_http(context_id, Action::Continue, "on_response_trailers", |c| {
            c.on_http_response_trailers(num_trailers)
        }) as u32
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    run(context_id, || {
        if http_cell(context_id).is_some() {
            on_http(context_id, true, "on_done", |c| c.on_done()) as u32
        } else {
            on_root(context_id, true, "on_done", |r| r.on_done()) as u32
        }
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    if is_busy(context_id) {
        return defer(Deferred::Log(context_id));
    }
    run(context_id, || {
        if http_cell(context_id).is_some() {
            on_http(context_id, (), "on_log", |c| c.on_log())
        } else {
            on_root(context_id, (), "on_log", |r| r.on_log())
        }
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    if is_busy(context_id) {
        return defer(Deferred::Delete(context_id));
    }
    // Remove from the registry first, then drop outside of any borrow so a
    // Drop impl may use the SDK.
    let removed_http = STATE.with(|s| s.https.borrow_mut().remove(&context_id));
    let removed_root = STATE.with(|s| s.roots.borrow_mut().remove(&context_id));
    // Forget the context's outstanding callouts (a late response is then an
    // unknown token). Root-made calls recorded as 0 are kept.
    STATE.with(|s| s.callouts.borrow_mut().retain(|_, owner| *owner != context_id));
    run(context_id, || {
        drop(removed_http);
        drop(removed_root);
    })
}
