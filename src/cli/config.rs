//! `config show`.

use super::{ConfigCommand, EXIT_OK};
use crate::config::Config;

/// Runs a `config` command.
pub(super) fn main(cmd: ConfigCommand, config: &Config) -> i32 {
    match cmd {
        ConfigCommand::Show => {
            print!("{}", config.to_redacted_toml());
            EXIT_OK
        }
    }
}
