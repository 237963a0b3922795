//! jq filters (the `jaq` crates): compiled when the configuration loads, so
//! that a syntax error is a configuration error; run on each document.
//!
//! A filter is code from the configuration, and jq is a whole language:
//! `def f: f; f` never ends, `repeat(1)` outputs forever, `def f: [f]; f`
//! recurses until the stack overflows, `"x" * 1e10` asks for 10 GB. None
//! of that can be caught in the process that runs it (a stack overflow or
//! a failed allocation aborts the process, a loop cannot be interrupted),
//! so a filter runs in a process of its own: the program itself, started
//! again with the hidden argument [`CHILD_ARG`] ([`serve`]), which
//! reads the filter, its variables and the document on standard input and
//! writes the outputs, one JSON document per line, on standard output.
//! That process
//!
//! - has at most [`MEMORY_LIMIT`] bytes of heap ([`Allocator`]) and a
//!   [`STACK_SIZE`] stack (the recursion limit);
//! - stops at [`MAX_OUTPUTS`] outputs or [`MAX_OUTPUT_BYTES`] of them;
//! - is killed when the run is abandoned (the run timeout, a shutdown: the
//!   future of [`Jq::run`] is dropped, and the process with it), and ends
//!   by itself should the program that started it be gone.
//!
//! Whatever it does, only that run fails, with a message saying why
//! (timeout, output limit, memory limit, recursion); the scheduler, the
//! health endpoint and the other collectors go on.
//!
//! A compiled jaq filter is not `Send`, so a [`Jq`] keeps the filter's text;
//! the process compiles it again on each run (microseconds for a filter of
//! a few lines).

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use std::path::PathBuf;
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The variables every filter gets: `$source` (the key of the URL the
/// document came from), `$url` (that URL, credentials redacted), `$now`
/// (the collection time, RFC 3339).
pub const VARS: &[&str] = &["$source", "$url", "$now"];

/// The hidden first argument that makes the program a filter's process.
pub const CHILD_ARG: &str = "__jq-filter";

/// The heap of a filter's process: the document and the filter's values.
pub const MEMORY_LIMIT: u64 = 1 << 30;

/// The stack the filter is evaluated on: how deep it may recurse.
pub const STACK_SIZE: usize = 16 << 20;

/// The most outputs of one filter run on one document (each a point or an
/// array of points).
pub const MAX_OUTPUTS: usize = 100_000;

/// The most bytes of output (as JSON) of one filter run on one document.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// The first line a filter's process writes: what tells the caller that
/// it is talking to this program's filter process and not to something
/// else.
const HELLO: &str = "ubuntu-metrics jq 1";

/// How much of a filter process's standard error is kept for the message.
const STDERR_KEPT: u64 = 4096;

/// A checked jq filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jq {
    code: String,
}

type Filter = jaq_core::Filter<data::JustLut<Val>>;
fn compile(code: &str) -> Result<Filter, String> {
    let program = File { code, path: () };
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader.load(&arena, program).map_err(|errs| {
        let mut msgs = Vec::new();
        for (_, e) in errs {
            match e {
                jaq_core::load::Error::Io(v) => {
                    msgs.extend(v.into_iter().map(|(path, m)| format!("{path}: {m}")))
                }
                jaq_core::load::Error::Lex(v) => msgs.extend(v.into_iter().map(|(expect, at)| {
                    format!("expected {} at {}", expect.as_str(), near(code, at))
                })),
                jaq_core::load::Error::Parse(v) => {
                    msgs.extend(v.into_iter().map(|(expect, at)| {
                        format!("expected {} at {}", expect.as_str(), near(code, at))
                    }))
                }
            }
        }
        format!("jq syntax error: {}", msgs.join("; "))
    })?;
    Compiler::default()
        .with_funs(funs)
        .with_global_vars(VARS.iter().copied())
        .compile(modules)
        .map_err(|errs| {
            let msgs: Vec<String> = errs
                .into_iter()
                .flat_map(|(_, v)| v)
                .map(|(name, undefined)| format!("undefined {undefined:?} {name}"))
                .collect();
            format!("jq error: {}", msgs.join("; "))
        })
}

/// Where in the filter `at` (a slice of `code`) starts: "offset N (`...`)".
fn near(code: &str, at: &str) -> String {
    let offset = (at.as_ptr() as usize).saturating_sub(code.as_ptr() as usize);
    let snippet: String = at.chars().take(20).collect();
    if snippet.is_empty() {
        format!("offset {offset} (the end)")
    } else {
        format!("offset {offset} ({snippet:?})")
    }
}

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Sets the program started for filters (it must call [`serve`] when its
/// first argument is [`CHILD_ARG`], as `ubuntu-metrics` does). Without
/// it, the running program (`/proc/self/exe`, which stays right even when
/// an upgrade replaced the file) is started: a test calling the library
/// from its own binary sets the built `ubuntu-metrics`. Only the first call
/// counts.
pub fn set_program(path: impl Into<PathBuf>) {
    let _ = PROGRAM.set(path.into());
}

fn program() -> PathBuf {
    PROGRAM
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// What the caller sends first, as one JSON line (the document follows).
#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    code: String,
    vars: [String; 3],
}

impl Jq {
    /// Checks `code`: its syntax and that every name it uses is defined.
    pub fn new(code: &str) -> Result<Jq, String> {
        compile(code)?;
        Ok(Jq {
            code: code.to_owned(),
        })
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// Runs the filter on `input` with the variables [`VARS`] (in that
    /// order), in a process of its own (see the module's documentation):
    /// every output, as JSON; the first error stops it. Dropping the future
    /// kills the process.
    pub async fn run(
        &self,
        input: &serde_json::Value,
        vars: [&str; 3],
    ) -> Result<Vec<serde_json::Value>, String> {
        let request = Request {
            code: self.code.clone(),
            vars: vars.map(str::to_owned),
        };
        let mut stdin_data = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        stdin_data.push(b'\n');
        serde_json::to_writer(&mut stdin_data, input).map_err(|e| e.to_string())?;

        let program = program();
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg0("ubuntu-metrics")
            .arg(CHILD_ARG)
            .arg(std::process::id().to_string())
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start the filter's process ({}): {e}",
                program.display()
            )
        })?;
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let write = async move {
            // The process may end before reading it all (an error, a
            // limit): its status says why, not the broken pipe.
            let _ = stdin.write_all(&stdin_data).await;
            drop(stdin);
        };
        // The process stops itself at the limit; one byte more here means
        // it did not, and is the same error.
        let max = (HELLO.len() + 1 + MAX_OUTPUT_BYTES + MAX_OUTPUTS) as u64;
        let read_out = async {
            let mut buf = Vec::new();
            let r = stdout.take(max + 1).read_to_end(&mut buf).await;
            r.map(|_| buf)
        };
        let read_err = async {
            let mut buf = Vec::new();
            let mut stderr = stderr;
            let _ = (&mut stderr).take(STDERR_KEPT).read_to_end(&mut buf).await;
            // Not kept, but read: the process must not block on a full pipe.
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            buf
        };
        let ((), out, err) = tokio::join!(write, read_out, read_err);
        let out = match out {
            Ok(out) if out.len() as u64 > max => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(output_limit());
            }
            Ok(out) => out,
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!("reading the filter's outputs: {e}"));
            }
        };
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for the filter's process: {e}"))?;
        let err = String::from_utf8_lossy(&err);
        let err = err.trim();
        if !status.success() {
            return Err(failure(status, err));
        }
        let text = std::str::from_utf8(&out)
            .map_err(|e| format!("the filter's outputs are not UTF-8: {e}"))?;
        let mut lines = text.lines();
        if lines.next() != Some(HELLO) {
            return Err(format!(
                "{} is not a program that runs jq filters (it must be ubuntu-metrics)",
                program.display()
            ));
        }
        lines
            .map(|l| {
                serde_json::from_str(l).map_err(|e| format!("jq output {l:?} is not JSON: {e}"))
            })
            .collect()
    }
}

fn output_limit() -> String {
    format!(
        "output limit: the filter output more than {MAX_OUTPUTS} values or {} MB (a filter that never stops, such as `repeat(1)`?)",
        MAX_OUTPUT_BYTES >> 20
    )
}

/// Why a filter's process failed, from its exit status and standard error.
fn failure(status: std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    if stderr.contains("has overflowed its stack") {
        return format!(
            "recursion limit: the filter recursed deeper than its {} MB stack allows (a recursive definition that never ends, such as `def f: [f]; f`?)",
            STACK_SIZE >> 20
        );
    }
    if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        return format!(
            "memory limit: the filter needed more than {} MB ({})",
            MEMORY_LIMIT >> 20,
            stderr.lines().next().unwrap_or_default()
        );
    }
    match (status.code(), status.signal()) {
        (Some(_), _) if !stderr.is_empty() => stderr.to_owned(),
        (Some(c), _) => format!("the filter's process exited with status {c} (no message)"),
        (None, Some(s)) => format!(
            "the filter's process was killed by signal {s}: {}",
            if stderr.is_empty() {
                "(no message)"
            } else {
                stderr
            }
        ),
        _ => format!("the filter's process failed: {stderr}"),
    }
}

/// Evaluates `code` on the JSON document `input` with the variables
/// [`VARS`], handing each output (as JSON text) to `out`, which may stop
/// the evaluation with an error. The filter's process runs this; it is
/// unbounded by itself.
pub fn evaluate(
    code: &str,
    input: &[u8],
    vars: [&str; 3],
    mut out: impl FnMut(String) -> Result<(), String>,
) -> Result<(), String> {
    let filter = compile(code)?;
    let input = jaq_json::read::parse_single(input)
        .map_err(|e| format!("the document cannot be handed to jq: {e}"))?;
    let vars = Vars::new(vars.map(|v| Val::from(v.to_owned())));
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, vars);
    for v in filter.id.run((ctx, input)).map(unwrap_valr) {
        let v = v.map_err(|e| format!("jq: {e}"))?;
        out(v.to_string())?;
    }
    Ok(())
}

/// The program's allocator ([`std::alloc::System`]), which can refuse
/// what would take the heap over a limit: the filter's process sets
/// [`MEMORY_LIMIT`] ([`limit_memory`]), so that a filter asking for more
/// fails as an allocation failure does (the process aborts, saying
/// "memory allocation of N bytes failed"). Not `RLIMIT_AS`: that bounds
/// the address space, of which the heap is only a part (the program's own
/// mapping, the thread stacks, the allocator's per-thread reservations
/// count too, and differ between builds), so the filter's share would be
/// whatever is left; and the units' system call filter removes
/// `@resources` (`setrlimit(2)` itself; glibc's `setrlimit` goes through
/// `prlimit64`, which is allowed today), so the limit would hang on how
/// the C library is built. Without a limit (the daemon, every command) it
/// adds one relaxed load per allocation.
///
/// `src/main.rs` installs it (`#[global_allocator]`).
pub struct Allocator;

/// The heap limit in bytes; `usize::MAX` when there is none.
static HEAP_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);
/// The heap in use since the limit was set (what was allocated before and
/// freed after makes it a little lower: it may go below zero).
static HEAP_USED: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

impl Allocator {
    /// Whether `more` bytes fit under the limit (and counts them).
    fn take(more: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let limit = HEAP_LIMIT.load(Relaxed);
        if limit == usize::MAX {
            return true;
        }
        let more = more as isize;
        let before = HEAP_USED.fetch_add(more, Relaxed);
        if before.saturating_add(more) > limit as isize {
            HEAP_USED.fetch_sub(more, Relaxed);
            return false;
        }
        true
    }

    fn give(less: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if HEAP_LIMIT.load(Relaxed) != usize::MAX {
            HEAP_USED.fetch_sub(less as isize, Relaxed);
        }
    }
}

// SAFETY: every call is handed to `System` unchanged, or refused (null)
// before it is; the counting touches no allocation.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if !Allocator::take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if p.is_null() {
            Allocator::give(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if !Allocator::take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if p.is_null() {
            Allocator::give(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        Allocator::give(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Allocator::take(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                Allocator::give(new_size - old);
            }
        } else if new_size < old {
            Allocator::give(old - new_size);
        }
        p
    }
}

/// Limits this process's heap to [`MEMORY_LIMIT`] (the filter's process
/// calls it before it reads anything); an error when the program does not
/// use [`Allocator`].
pub fn limit_memory() -> Result<(), String> {
    use std::sync::atomic::Ordering::Relaxed;
    HEAP_USED.store(0, Relaxed);
    HEAP_LIMIT.store(MEMORY_LIMIT as usize, Relaxed);
    // More than the limit, refused without being used: the proof that the
    // limit holds (any other allocator would hand it out, unused).
    if Vec::<u8>::new()
        .try_reserve_exact(MEMORY_LIMIT as usize + 1)
        .is_ok()
    {
        HEAP_LIMIT.store(usize::MAX, Relaxed);
        return Err("cannot limit the memory of a jq filter: the program does not use ubuntu_metrics::custom::jq::Allocator".into());
    }
    Ok(())
}

/// How the filter's process ends ([`serve`]): it exits 0 when `Done`, else
/// with an error status and [`Served::message`] on its standard error (the
/// caller returns that message).
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// Every output written.
    Done,
    /// Stopped at [`MAX_OUTPUTS`] or [`MAX_OUTPUT_BYTES`].
    OutputLimit,
    /// The filter's error (or a request that is not valid): the message.
    Failed(String),
}

impl Served {
    /// What the filter's process says on its standard error, if anything.
    pub fn message(&self) -> Option<String> {
        match self {
            Served::Done => None,
            Served::OutputLimit => Some(output_limit()),
            Served::Failed(e) => Some(e.clone()),
        }
    }
}

/// The work of the filter's process: reads the request (one JSON line:
/// the filter and its variables) and the document from `input`, evaluates
/// the filter on a [`STACK_SIZE`] stack (the same recursion limit whatever
/// `ulimit -s` says) and writes [`HELLO`] then each output, one per line,
/// to `output`, stopping at the output limit.
pub fn serve<W: std::io::Write + Send + 'static>(
    mut input: impl std::io::BufRead,
    output: W,
) -> Served {
    use std::io::Write as _;
    let mut header = Vec::new();
    let mut document = Vec::new();
    if let Err(e) = input
        .read_until(b'\n', &mut header)
        .and_then(|_| input.read_to_end(&mut document))
    {
        return Served::Failed(format!("reading the filter and the document: {e}"));
    }
    let request: Request = match serde_json::from_slice(&header) {
        Ok(r) => r,
        Err(e) => return Served::Failed(format!("the filter's request is not valid: {e}")),
    };
    let eval = std::thread::Builder::new()
        .name("jq".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let mut w = std::io::BufWriter::new(output);
            let write = |w: &mut std::io::BufWriter<W>, line: &str| -> Result<(), String> {
                w.write_all(line.as_bytes())
                    .and_then(|()| w.write_all(b"\n"))
                    .map_err(|e| format!("writing the filter's outputs: {e}"))
            };
            if let Err(e) = write(&mut w, HELLO) {
                return Served::Failed(e);
            }
            let (mut outputs, mut bytes, mut limited) = (0usize, 0usize, false);
            let vars = [
                request.vars[0].as_str(),
                request.vars[1].as_str(),
                request.vars[2].as_str(),
            ];
            let r = evaluate(&request.code, &document, vars, |v| {
                outputs += 1;
                bytes += v.len();
                if outputs > MAX_OUTPUTS || bytes > MAX_OUTPUT_BYTES {
                    limited = true;
                    return Err(output_limit());
                }
                write(&mut w, &v)
            });
            if let Err(e) = w.flush() {
                return Served::Failed(format!("writing the filter's outputs: {e}"));
            }
            match r {
                Err(_) if limited => Served::OutputLimit,
                Err(e) => Served::Failed(e),
                Ok(()) => Served::Done,
            }
        });
    match eval {
        Ok(t) => t
            .join()
            .unwrap_or_else(|_| Served::Failed("the filter panicked".into())),
        Err(e) => Served::Failed(format!("cannot start the filter's thread: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::Captured;
    use serde_json::json;

    /// [`evaluate`] in this process, collecting the outputs as JSON.
    fn eval(
        code: &str,
        input: serde_json::Value,
        vars: [&str; 3],
    ) -> Result<Vec<serde_json::Value>, String> {
        let mut out = Vec::new();
        evaluate(code, input.to_string().as_bytes(), vars, |v| {
            out.push(serde_json::from_str(&v).map_err(|e| e.to_string())?);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn runs_with_variables_and_keeps_number_types() {
        let code = "{a: .x, b: (.x + 0.5), c: 5.0, s: $source, n: $now}";
        Jq::new(code).unwrap();
        let out = eval(
            code,
            json!({"x": 5}),
            ["production", "http://h/", "2026-11-24T12:00:00Z"],
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        let o = &out[0];
        assert!(o["a"].is_i64(), "{o}");
        assert!(o["b"].is_f64(), "{o}");
        assert!(o["c"].is_f64(), "{o}");
        assert_eq!(o["s"], "production");
        assert_eq!(o["n"], "2026-11-24T12:00:00Z");
    }

    #[test]
    fn syntax_errors_and_undefined_names_are_refused() {
        let e = Jq::new(".a | {").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
        let e = Jq::new(".a | nosuchfunction").unwrap_err();
        assert!(e.contains("nosuchfunction"), "{e}");
        let e = Jq::new("$nosuchvar").unwrap_err();
        assert!(e.contains("nosuchvar"), "{e}");
    }

    #[test]
    fn evaluation_errors_are_returned() {
        let e = eval(".a + 1", json!({"a": "x"}), ["", "", ""]).unwrap_err();
        assert!(e.starts_with("jq: "), "{e}");
    }

    #[test]
    fn the_output_callback_stops_an_endless_filter() {
        let mut n = 0;
        let e = evaluate("repeat(1)", b"null", ["", "", ""], |_| {
            n += 1;
            if n > 10 { Err("enough".into()) } else { Ok(()) }
        })
        .unwrap_err();
        assert_eq!((e.as_str(), n), ("enough", 11));
    }

    #[test]
    fn a_failed_process_is_named_by_its_cause() {
        use std::os::unix::process::ExitStatusExt;
        let abort = std::process::ExitStatus::from_raw(libc::SIGABRT);
        let e = failure(
            abort,
            "thread 'jq' has overflowed its stack\nfatal runtime error: stack overflow",
        );
        assert!(e.starts_with("recursion limit: "), "{e}");
        let e = failure(abort, "memory allocation of 10000000000 bytes failed");
        assert!(
            e.starts_with("memory limit: ") && e.contains("10000000000"),
            "{e}"
        );
        let e = failure(
            std::process::ExitStatus::from_raw(1 << 8),
            "jq: cannot add\n",
        );
        assert_eq!(e, "jq: cannot add\n");
        let e = failure(std::process::ExitStatus::from_raw(1 << 8), "");
        assert!(e.contains("status 1 (no message)"), "{e}");
        let e = failure(std::process::ExitStatus::from_raw(libc::SIGKILL), "");
        assert!(e.contains("signal 9"), "{e}");
    }

    fn request(code: &str, doc: &str) -> Vec<u8> {
        let r = Request {
            code: code.into(),
            vars: ["s".into(), "u".into(), "n".into()],
        };
        format!("{}\n{doc}", serde_json::to_string(&r).unwrap()).into_bytes()
    }

    #[test]
    fn the_process_writes_each_output_on_a_line_and_stops_at_the_output_limit() {
        let out = Captured::default();
        let served = serve(&request(".[] | . + 1", "[1, 2]")[..], out.clone());
        assert_eq!(served, Served::Done);
        let text = out.text();
        assert_eq!(text, format!("{HELLO}\n2\n3\n"));

        let out = Captured::default();
        let served = serve(&request("repeat(1)", "null")[..], out.clone());
        assert_eq!(served, Served::OutputLimit);
        assert!(served.message().unwrap().starts_with("output limit: "));
        let text = out.text();
        assert_eq!(text.lines().count(), 1 + MAX_OUTPUTS);

        let served = serve(&b"not json\n{}"[..], Captured::default());
        assert!(
            matches!(&served, Served::Failed(e) if e.contains("request is not valid")),
            "{served:?}"
        );
    }
}
