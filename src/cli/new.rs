//! `new NAME --exec|--http|--first-generation CHECKOUT`: a ready
//! configuration block for a collector declared in the configuration, and
//! for a script its Python skeleton; for a first-generation collector, its
//! block with the measurements of the points it returned when run once.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, NewArgs};
use crate::custom::template;

mod first_generation;

pub(super) fn main(args: &NewArgs) -> i32 {
    let name = super::normalise_name(&args.name);
    if !crate::custom::valid_name(&name) {
        eprintln!(
            "ubuntu-metrics: new: {:?}: a collector's name is lower-case letters, digits and `_` (or `-`, read as `_`), starting with a letter",
            args.name
        );
        return EXIT_USAGE;
    }
    let builtin = crate::collectors::registry()
        .iter()
        .any(|c| c.name() == name);
    if let Some(checkout) = &args.first_generation {
        return first_generation::main(&name, builtin, checkout, args.adapter.as_deref());
    }
    if builtin {
        eprintln!("ubuntu-metrics: new: {name} is a built-in collector: choose another name");
        return EXIT_USAGE;
    }
    if args.http {
        print!("{}", template::http_block(&name));
        return EXIT_OK;
    }
    let skeleton = template::python_skeleton(&name);
    match &args.script {
        Some(path) => {
            if path.exists() {
                eprintln!(
                    "ubuntu-metrics: new: {} exists: not overwritten",
                    path.display()
                );
                return EXIT_FAILED;
            }
            let written = std::fs::write(path, &skeleton).and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            });
            if let Err(e) = written {
                eprintln!("ubuntu-metrics: new: {}: {e}", path.display());
                return EXIT_FAILED;
            }
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            print!(
                "{}",
                template::exec_block(&name, &shown.display().to_string())
            );
            eprintln!(
                "ubuntu-metrics: wrote the script skeleton {}",
                shown.display()
            );
        }
        None => {
            let script = format!("/usr/local/lib/ubuntu-metrics/{name}.py");
            print!("{}", template::exec_block(&name, &script));
            println!("\n# ---- {script} (or write it with --script PATH) ----");
            print!("{skeleton}");
        }
    }
    EXIT_OK
}
