//! nginx's configuration tokenizer, one statement at a time.
//!
//! nginx splits a file into words and three punctuation marks (`;`, `{`,
//! `}`). The rules this module reproduces, checked against nginx 1.22:
//!
//! - spaces, tabs, CR and LF separate words, anywhere;
//! - `#` starts a comment to the end of the line only where a word would
//!   start; inside a word it is an ordinary character;
//! - a word that starts with `"` or `'` runs to the matching quote and
//!   may span lines; right after the closing quote only whitespace, `;`
//!   or `{` may follow;
//! - a backslash protects the next character from being read as a
//!   separator or quote, and in the word's text `\"`, `\'` and `\\` stand
//!   for the character itself, `\t`, `\r` and `\n` for tab, CR and LF;
//! - `;` and `{` end a word; `}` ends a statement only where a word would
//!   start, and after `$` a `{` belongs to the word (`${name}`).

use super::error::ConfigError;

/// A place in the input: 1-based line and column, columns counted in
/// characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

/// One word as nginx reads it, with escapes resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub pos: Pos,
}

/// What ended a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// `;`
    Semicolon,
    /// `{`: the statement opens a block.
    BlockStart,
    /// `}` with no words before it: the enclosing block closes.
    BlockDone,
    /// The input ended where a statement could start.
    Eof,
}

/// The words of one statement and what ended it, at `end_pos`.
#[derive(Clone, Debug)]
pub(crate) struct Statement {
    pub words: Vec<Word>,
    pub end: End,
    pub end_pos: Pos,
}

/// Reads statements from text, as nginx's `ngx_conf_read_token` does.
pub(crate) struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

/// Where a word is in its scan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            pos: Pos { line: 1, column: 1 },
        }
    }

    /// The position of the next character, or of the end of input.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.column = 1;
        } else {
            self.pos.column = self.pos.column.saturating_add(1);
        }
        Some(c)
    }

    /// Reads the next statement.
    ///
    /// # Errors
    ///
    /// nginx's messages for a stray `;`, `{` or `}`, a character glued to
    /// a closing quote, and input that ends inside a statement.
    pub fn statement(&mut self) -> Result<Statement, ConfigError> {
        let mut words = Vec::new();
        loop {
            let pos = self.pos;
            let Some(c) = self.chars.peek().copied() else {
                if words.is_empty() {
                    return Ok(Statement {
                        words,
                        end: End::Eof,
                        end_pos: pos,
                    });
                }
                return Err(eof_in_statement(pos));
            };
            match c {
                ' ' | '\t' | '\r' | '\n' => {
                    self.bump();
                }
                '#' => self.skip_comment(),
                ';' | '{' => {
                    self.bump();
                    if words.is_empty() {
                        return Err(ConfigError::at(pos, c.to_string(), unexpected(c)));
                    }
                    let end = if c == ';' {
                        End::Semicolon
                    } else {
                        End::BlockStart
                    };
                    return Ok(Statement {
                        words,
                        end,
                        end_pos: pos,
                    });
                }
                '}' => {
                    self.bump();
                    if !words.is_empty() {
                        return Err(ConfigError::at(pos, "}", unexpected('}')));
                    }
                    return Ok(Statement {
                        words,
                        end: End::BlockDone,
                        end_pos: pos,
                    });
                }
                _ => {
                    let (word, stop) = self.word()?;
                    words.push(word);
                    if let Some((stop, stop_pos)) = stop {
                        let end = if stop == ';' {
                            End::Semicolon
                        } else {
                            End::BlockStart
                        };
                        return Ok(Statement {
                            words,
                            end,
                            end_pos: stop_pos,
                        });
                    }
                }
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    /// Reads one word starting at the next character. Returns the `;` or
    /// `{` that ended it when one did, consumed.
    #[allow(clippy::type_complexity)]
    fn word(&mut self) -> Result<(Word, Option<(char, Pos)>), ConfigError> {
        let start = self.pos;
        let quote = match self.chars.peek() {
            Some('"') => Quote::Double,
            Some('\'') => Quote::Single,
            _ => Quote::None,
        };
        if quote != Quote::None {
            self.bump();
        }
        // The raw characters, escapes still in place; resolved at the end
        // as nginx does, so that the scan and the text agree.
        let mut raw = String::new();
        let mut escaped = false;
        let mut after_dollar = false;
        loop {
            let pos = self.pos;
            let Some(c) = self.bump() else {
                return Err(eof_in_statement(pos));
            };
            if escaped {
                escaped = false;
                raw.push(c);
                continue;
            }
            if c == '{' && after_dollar && quote == Quote::None {
                after_dollar = false;
                raw.push(c);
                continue;
            }
            after_dollar = c == '$';
            if c == '\\' {
                escaped = true;
                raw.push(c);
                continue;
            }
            match quote {
                Quote::Double if c == '"' => return self.after_quote(raw, start),
                Quote::Single if c == '\'' => return self.after_quote(raw, start),
                Quote::None => match c {
                    ' ' | '\t' | '\r' | '\n' => return Ok((word(raw, start), None)),
                    ';' | '{' => return Ok((word(raw, start), Some((c, pos)))),
                    _ => raw.push(c),
                },
                _ => raw.push(c),
            }
        }
    }

    /// After a closing quote nginx needs whitespace, `;` or `{`.
    #[allow(clippy::type_complexity)]
    fn after_quote(
        &mut self,
        raw: String,
        start: Pos,
    ) -> Result<(Word, Option<(char, Pos)>), ConfigError> {
        let pos = self.pos;
        match self.chars.peek().copied() {
            None | Some(' ' | '\t' | '\r' | '\n') => Ok((word(raw, start), None)),
            Some(c @ (';' | '{')) => {
                self.bump();
                Ok((word(raw, start), Some((c, pos))))
            }
            Some(c) => Err(ConfigError::at(pos, c.to_string(), unexpected(c))),
        }
    }
}

fn word(raw: String, pos: Pos) -> Word {
    Word {
        text: unescape(&raw),
        pos,
    }
}

/// Resolves nginx's escapes: `\"`, `\'`, `\\` and `\t`, `\r`, `\n`; any
/// other backslash stays as written.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some(n @ ('"' | '\'' | '\\')) => {
                chars.next();
                out.push(n);
            }
            Some('t') => {
                chars.next();
                out.push('\t');
            }
            Some('r') => {
                chars.next();
                out.push('\r');
            }
            Some('n') => {
                chars.next();
                out.push('\n');
            }
            _ => out.push('\\'),
        }
    }
    out
}

fn unexpected(c: char) -> String {
    format!("unexpected \"{c}\"")
}

fn eof_in_statement(pos: Pos) -> ConfigError {
    ConfigError::at(
        pos,
        "",
        "unexpected end of file, expecting \";\" or \"}\"".to_string(),
    )
}

/// Writes `text` so that the tokenizer reads it back as exactly one word
/// with exactly this text: bare when that is safe, double-quoted with `\`
/// and `"` escaped otherwise.
pub(crate) fn quote(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, ';' | '{' | '}' | '"' | '\'' | '\\' | '#'));
    if bare {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<(Vec<String>, End)> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let st = lx.statement().unwrap();
            let done = st.end == End::Eof;
            out.push((st.words.into_iter().map(|w| w.text).collect(), st.end));
            if done {
                return out;
            }
        }
    }

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn splits_words_and_statements() {
        assert_eq!(
            texts("a b;\n c\n\td { }"),
            vec![
                (v(&["a", "b"]), End::Semicolon),
                (v(&["c", "d"]), End::BlockStart),
                (v(&[]), End::BlockDone),
                (v(&[]), End::Eof),
            ]
        );
    }

    #[test]
    fn comments_only_where_a_word_starts() {
        assert_eq!(
            texts("# top\na#b c # rest ;\n;"),
            vec![(v(&["a#b", "c"]), End::Semicolon), (v(&[]), End::Eof)]
        );
    }

    #[test]
    fn quotes_escapes_and_braces_inside_words() {
        assert_eq!(
            texts(r#"a "x y;{}" 'q"' \"e \\ t\t ${v} w}x;"#),
            vec![
                (
                    v(&["a", "x y;{}", "q\"", "\"e", "\\", "t\t", "${v}", "w}x"]),
                    End::Semicolon
                ),
                (v(&[]), End::Eof),
            ]
        );
        assert_eq!(
            texts("\"multi\nline\";"),
            vec![(v(&["multi\nline"]), End::Semicolon), (v(&[]), End::Eof)]
        );
        assert_eq!(
            texts(r"a\;b;"),
            vec![(v(&[r"a\;b"]), End::Semicolon), (v(&[]), End::Eof)]
        );
    }

    #[test]
    fn positions_are_line_and_character_column() {
        let mut lx = Lexer::new("é\n  bb \"c\";");
        let st = lx.statement().unwrap();
        let pos: Vec<Pos> = st.words.iter().map(|w| w.pos).collect();
        assert_eq!(
            pos,
            vec![
                Pos { line: 1, column: 1 },
                Pos { line: 2, column: 3 },
                Pos { line: 2, column: 6 },
            ]
        );
        assert_eq!(st.end_pos, Pos { line: 2, column: 9 });
    }

    #[test]
    fn refuses_what_nginx_refuses() {
        let err = |src: &str| {
            let mut lx = Lexer::new(src);
            loop {
                match lx.statement() {
                    Err(e) => return e.to_string(),
                    Ok(st) if st.end == End::Eof => return "no error".into(),
                    Ok(_) => {}
                }
            }
        };
        assert_eq!(err(";"), "1:1: unexpected \";\"");
        assert_eq!(err("a\n {"), "no error");
        assert_eq!(err(" {"), "1:2: unexpected \"{\"");
        assert_eq!(err("a }"), "1:3: unexpected \"}\"");
        assert_eq!(err("a \"b\"c;"), "1:6: unexpected \"c\"");
        assert_eq!(err("a \"b\"}"), "1:6: unexpected \"}\"");
        assert_eq!(
            err("a b"),
            "1:4: unexpected end of file, expecting \";\" or \"}\""
        );
        assert_eq!(
            err("a \"b;"),
            "1:6: unexpected end of file, expecting \";\" or \"}\""
        );
    }

    #[test]
    fn quote_reads_back_as_one_word() {
        for text in [
            "plain", "", "a b", "x;y", "q\"'", "\\t", "#c", "}", "${x}", "ü\n",
        ] {
            let src = format!("{} ;", quote(text));
            let mut lx = Lexer::new(&src);
            let st = lx.statement().unwrap();
            assert_eq!(st.words.len(), 1, "{src}");
            assert_eq!(st.words[0].text, text, "{src}");
        }
        assert_eq!(quote("10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(quote("a b"), "\"a b\"");
    }
}
