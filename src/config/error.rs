//! Why a configuration was refused.

use std::path::PathBuf;

use super::lexer::Pos;
use super::Format;
use crate::BuildError;

/// Why an upstream configuration was refused.
///
/// Messages from the nginx parser start with the line and column of the
/// word at fault (`3:14: invalid parameter "weight=0"`); where nginx
/// refuses the same input, the rest of the message is nginx's own.
///
/// # Examples
///
/// ```
/// use upstream::config::{parse_nginx, ConfigError};
///
/// let err = parse_nginx("upstream app {\n  server 10.0.0.1 weight=0;\n}").unwrap_err();
/// assert_eq!(err.to_string(), "2:19: invalid parameter \"weight=0\"");
/// let ConfigError::Nginx { line, column, word, .. } = err else { panic!() };
/// assert_eq!((line, column, word.as_str()), (2, 19, "weight=0"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The nginx text was refused at a word.
    #[error("{line}:{column}: {reason}")]
    Nginx {
        /// 1-based line of the word at fault.
        line: u32,
        /// 1-based column, in characters, of the word at fault.
        column: u32,
        /// The word at fault, as read (empty when the input ended).
        word: String,
        /// What is wrong, in nginx's words where nginx has them.
        reason: String,
    },
    /// A `server` line parsed, but the backend set refused it (a
    /// duplicate address, a weight above [`MAX_WEIGHT`](crate::MAX_WEIGHT)).
    #[error("{line}:{column}: {source}")]
    Backend {
        /// 1-based line of the server's address.
        line: u32,
        /// 1-based column of the server's address.
        column: u32,
        /// The server's address as written.
        server: String,
        /// Why the backend set refused it.
        source: BuildError,
    },
    /// A TOML or JSON document did not parse or did not describe a valid
    /// upstream.
    #[error("{format} {message}")]
    Document {
        /// The document's format.
        format: Format,
        /// The parser's message, with its position when it has one.
        message: String,
    },
    /// An upstream built in code or deserialized breaks a rule that the
    /// nginx text form enforces.
    #[error("upstream \"{name}\": {reason}")]
    Invalid {
        /// The upstream's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl ConfigError {
    pub(crate) fn at(pos: Pos, word: impl Into<String>, reason: String) -> Self {
        ConfigError::Nginx {
            line: pos.line,
            column: pos.column,
            word: word.into(),
            reason,
        }
    }
}
