//! jq filters (the `jaq` crates): compiled when the configuration loads, so
//! that a syntax error is a configuration error; run on each document.
//!
//! A compiled jaq filter is not `Send`, so a [`Jq`] keeps the filter's text
//! and compiles it again on each run, in a synchronous call (no `.await`
//! holds it): compiling a filter of a few lines takes microseconds.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

/// The variables every filter gets: `$source` (the key of the URL the
/// document came from), `$url` (that URL, credentials redacted), `$now`
/// (the collection time, RFC 3339).
pub const VARS: &[&str] = &["$source", "$url", "$now"];

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
    /// order): every output, as JSON; the first error stops it.
    pub fn run(
        &self,
        input: &serde_json::Value,
        vars: [&str; 3],
    ) -> Result<Vec<serde_json::Value>, String> {
        let filter = compile(&self.code)?;
        let text = input.to_string();
        let input = jaq_json::read::parse_single(text.as_bytes())
            .map_err(|e| format!("the document cannot be handed to jq: {e}"))?;
        let vars = Vars::new(vars.map(|v| Val::from(v.to_owned())));
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, vars);
        let mut out = Vec::new();
        for v in filter.id.run((ctx, input)).map(unwrap_valr) {
            let v = v.map_err(|e| format!("jq: {e}"))?;
            let json = v.to_string();
            out.push(
                serde_json::from_str(&json)
                    .map_err(|e| format!("jq output {json:?} is not JSON: {e}"))?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_with_variables_and_keeps_number_types() {
        let jq = Jq::new("{a: .x, b: (.x + 0.5), c: 5.0, s: $source, n: $now}").unwrap();
        let out = jq
            .run(
                &json!({"x": 5}),
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
        let jq = Jq::new(".a + 1").unwrap();
        let e = jq.run(&json!({"a": "x"}), ["", "", ""]).unwrap_err();
        assert!(e.starts_with("jq: "), "{e}");
    }
}
