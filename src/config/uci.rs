//! The UCI file format as OpenWrt's libuci reads it (`uci/file.c`), ported statement for
//! statement so that a file means the same here as on the router.
//!
//! Owns: turning the text of one `/etc/config/*` file into [`Package`]: sections (`config TYPE
//! ['name']`), options (`option NAME 'value'`) and lists (`list NAME 'value'`), with libuci's
//! quoting ('…' literal, "…" with backslash escapes, adjacent parts joined, quotes spanning
//! lines), backslash line continuation, `#` comments (also inside a word), `;` between
//! statements, abbreviations (`c`, `o`, `l`, `p`), and its merge rules (a named section opened
//! twice is one section; setting an option again moves it to the end; an empty value changes
//! nothing).
//! Does not own: what any option means (see [`super`]), reading files.
//!
//! libuci works on a line buffer it rewrites in place (`strtok`, in-place unquoting); this port
//! keeps that buffer so that even its corner cases (`option a b;option c d` loses the second
//! statement, `config\n` is an unknown command) agree. The differences, on purpose: line numbers
//! count a last line without a newline (libuci's do not), and a NUL byte is an error.

use std::fmt;

/// One parsed config file (a UCI "package").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub sections: Vec<Section>,
    /// `option NAME` statements written without any value (libuci ignores them): `(section index, option name, line)`.
    pub valueless: Vec<(usize, String, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type: `config TYPE`.
    pub kind: String,
    /// `None` for an anonymous section (libuci names it `cfgXXXXXX`).
    pub name: Option<String>,
    /// Where the section was first opened.
    pub line: usize,
    pub options: Vec<UciOption>,
}

impl Section {
    pub fn get(&self, name: &str) -> Option<&UciOption> {
        self.options.iter().find(|o| o.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciOption {
    pub name: String,
    /// `true` for a `list`, `false` for an `option` (exactly one item).
    pub is_list: bool,
    /// `(value, line)`: every value with the line its statement started on.
    pub items: Vec<(String, usize)>,
}

impl UciOption {
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(v, _)| v.as_str())
    }
}

/// Why a file is not valid UCI; the statement is named so a person can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Syntax {
    /// A quote opened but never closed before the end of the file.
    #[error("a {0} quote is opened but never closed (the file ends inside it)")]
    UnterminatedQuote(char),
    /// `option` or `list` before the first `config` line.
    #[error("'{0}' comes before any 'config' line: every option belongs to a section")]
    OutsideSection(String),
    /// The first word of a statement is not config/option/list/package.
    #[error("'{0}' is not a UCI statement: lines start with config, option or list (# starts a comment)")]
    UnknownStatement(String),
    /// `config` without a type.
    #[error("'config' needs a section type, e.g. config wifipos 'main'")]
    MissingType,
    /// `option`, `list` or `package` without a name.
    #[error("'{0}' needs a name, e.g. option venue 'Cafe Nord'")]
    MissingName(String),
    /// A section or option name with characters other than letters, digits and `_`.
    #[error("'{0}' is not a valid name: use only letters, digits and _")]
    BadName(String),
    /// A section type with spaces, quotes-only or control characters.
    #[error("'{0}' is not a valid section type: use letters, digits and _ (no spaces)")]
    BadType(String),
    /// More words than the statement takes.
    #[error("too many words in this '{0}' line: put a value with spaces in quotes, e.g. option venue 'Cafe Nord'")]
    TooManyWords(String),
    /// `config a 'x'` after `config b 'x'`.
    #[error("section '{name}' was declared as type '{first}' before and now as '{second}': one name, one type")]
    TypeClash {
        name: String,
        first: String,
        second: String,
    },
    /// A NUL byte: not a text file.
    #[error("the file contains a NUL byte: this is not a text config file")]
    NulByte,
}

/// A syntax error and the line it is on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub problem: Syntax,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Parses the text of one UCI file the way libuci's `uci_load` does (strict mode: the first
/// error stops it).
pub fn parse(text: &str) -> Result<Package, SyntaxError> {
    if let Some(at) = text.find('\0') {
        return Err(SyntaxError {
            line: text[..at].matches('\n').count() + 1,
            problem: Syntax::NulByte,
        });
    }
    let mut p = Parser {
        input: text.as_bytes(),
        ipos: 0,
        buf: Vec::new(),
        pos: 0,
        filled: 0,
        line: 0,
        eof: false,
        pkg: Package::default(),
        current: None,
    };
    while !p.eof {
        p.pos = 0;
        p.getln(0);
        if p.at(0) != 0 {
            let start = p.line;
            p.parse_line(start).map_err(|problem| SyntaxError {
                line: p.line.max(1),
                problem,
            })?;
        }
    }
    Ok(p.pkg)
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// libuci's `uci_validate_str`.
fn valid_str(s: &[u8], name: bool, package: bool) -> bool {
    !s.is_empty()
        && s.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || c == b'_'
                || (c == b'-' && package)
                || (!name && (33..=126).contains(&c))
        })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Parser<'a> {
    input: &'a [u8],
    ipos: usize,
    /// libuci's `pctx->buf`: the current line(s), rewritten in place; 0 ends a string.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    line: usize,
    eof: bool,
    pkg: Package,
    current: Option<usize>,
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        self.buf.get(i).copied().unwrap_or(0)
    }

    fn set(&mut self, i: usize, c: u8) {
        if i >= self.buf.len() {
            self.buf.resize(i + 1, 0);
        }
        self.buf[i] = c;
    }

    fn cur(&self) -> u8 {
        self.at(self.pos)
    }

    /// The 0-terminated string at `i`.
    fn str_at(&self, i: usize) -> &[u8] {
        let rest = self.buf.get(i..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// `uci_getln`: reads the next line (with its newline) into the buffer at `offset`.
    fn getln(&mut self, offset: usize) {
        self.set(offset, 0);
        let rest = &self.input[self.ipos.min(self.input.len())..];
        if rest.is_empty() {
            self.eof = true;
            return;
        }
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .map_or(rest.len(), |p| p + 1);
        self.buf.truncate(offset);
        self.buf.extend_from_slice(&rest[..n]);
        self.buf.push(0);
        self.ipos += n;
        self.filled = offset + n;
        self.line += 1;
        if rest[n - 1] != b'\n' {
            self.eof = true;
        }
    }

    fn skip_whitespace(&mut self) {
        while self.cur() != 0 && is_space(self.cur()) {
            self.pos += 1;
        }
    }

    fn addc(&mut self, target: &mut usize) {
        let c = self.cur();
        self.set(*target, c);
        *target += 1;
        self.pos += 1;
    }

    /// `parse_backslash`: `true` if the escaped character is to be taken literally, `false` if
    /// the backslash ended the line and the next line was appended.
    fn parse_backslash(&mut self) -> bool {
        self.pos += 1;
        let c = self.cur();
        if c == 0
            || c == b'\n'
            || (c == b'\r' && self.at(self.pos + 1) == b'\n' && self.at(self.pos + 2) == 0)
        {
            self.getln(self.pos);
            return false;
        }
        true
    }

    fn parse_double_quote(&mut self, target: &mut usize) -> Result<(), Syntax> {
        self.pos += 1;
        loop {
            match self.cur() {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos);
                    if self.cur() == 0 {
                        return Err(Syntax::UnterminatedQuote('"'));
                    }
                }
                b'\\' => {
                    if self.parse_backslash() {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    fn parse_single_quote(&mut self, target: &mut usize) -> Result<(), Syntax> {
        self.pos += 1;
        loop {
            match self.cur() {
                b'\'' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos);
                    if self.cur() == 0 {
                        return Err(Syntax::UnterminatedQuote('\''));
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    /// `parse_str`: one argument, unquoted and quoted parts joined, written at `target`.
    fn parse_str(&mut self, target: &mut usize) -> Result<(), Syntax> {
        let mut next = true;
        loop {
            match self.cur() {
                b'\'' => self.parse_single_quote(target)?,
                b'"' => self.parse_double_quote(target)?,
                b'#' => {
                    self.set(self.pos, 0);
                    break;
                }
                0 => break,
                b';' => {
                    next = false;
                    break;
                }
                b'\\' => {
                    if self.parse_backslash() {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
            if self.cur() == 0 || is_space(self.cur()) {
                break;
            }
        }
        if self.cur() != 0 && next {
            self.pos += 1;
        }
        self.set(*target, 0);
        Ok(())
    }

    /// `next_arg`: the offset of the next argument (empty at the end of the statement).
    fn next_arg(
        &mut self,
        required: Option<Syntax>,
        name: bool,
        package: bool,
    ) -> Result<usize, Syntax> {
        self.skip_whitespace();
        let val = self.pos;
        let mut ptr = val;
        if self.cur() == b';' {
            self.set(self.pos, 0);
            self.pos += 1;
        } else {
            self.parse_str(&mut ptr)?;
        }
        if self.at(val) == 0 {
            return match required {
                Some(e) => Err(e),
                None => Ok(val),
            };
        }
        if name && !valid_str(self.str_at(val), true, package) {
            return Err(Syntax::BadName(lossy(self.str_at(val))));
        }
        Ok(val)
    }

    fn assert_eol(&mut self, statement: &str) -> Result<(), Syntax> {
        self.skip_whitespace();
        let v = self.next_arg(None, false, false)?;
        if self.at(v) != 0 {
            return Err(Syntax::TooManyWords(statement.into()));
        }
        Ok(())
    }

    /// Moves past the statement's first word (strtok put a 0 after it).
    fn skip_word(&mut self, missing: Syntax) -> Result<(), Syntax> {
        let len = self.str_at(self.pos).len();
        if self.pos + len + 1 > self.filled {
            return Err(missing);
        }
        self.pos += len + 1;
        Ok(())
    }

    /// `uci_parse_line`: the statements of one line, split by `;`.
    fn parse_line(&mut self, start: usize) -> Result<(), Syntax> {
        self.skip_whitespace();
        loop {
            // strtok(cur, " \t"): the word is ended by a 0 written over the delimiter.
            let mut s = self.pos;
            while matches!(self.at(s), b' ' | b'\t') {
                s += 1;
            }
            if self.at(s) == 0 {
                return Ok(());
            }
            let mut e = s;
            while !matches!(self.at(e), 0 | b' ' | b'\t') {
                e += 1;
            }
            self.set(e, 0);
            let word = self.buf[s..e].to_vec();
            match word.as_slice() {
                [b'#', ..] => return Ok(()),
                b"p" | b"package" => self.parse_package()?,
                b"c" | b"config" => self.parse_config(start)?,
                b"o" | b"option" => self.parse_option(false, start)?,
                b"l" | b"list" => self.parse_option(true, start)?,
                w => {
                    let w = lossy(w);
                    return Err(match w.trim_end() {
                        "config" | "c" => Syntax::MissingType,
                        t @ ("option" | "list" | "package" | "o" | "l" | "p") => {
                            Syntax::MissingName(t.into())
                        }
                        _ => Syntax::UnknownStatement(w.trim_end().into()),
                    });
                }
            }
        }
    }

    fn parse_package(&mut self) -> Result<(), Syntax> {
        self.skip_word(Syntax::MissingName("package".into()))?;
        self.next_arg(Some(Syntax::MissingName("package".into())), true, true)?;
        self.assert_eol("package")
    }

    fn parse_config(&mut self, line: usize) -> Result<(), Syntax> {
        self.skip_word(Syntax::MissingType)?;
        let t = self.next_arg(Some(Syntax::MissingType), false, false)?;
        if !valid_str(self.str_at(t), false, false) {
            return Err(Syntax::BadType(lossy(self.str_at(t))));
        }
        let n = self.next_arg(None, true, false)?;
        self.assert_eol("config")?;
        let kind = lossy(self.str_at(t));
        let name = lossy(self.str_at(n));
        if name.is_empty() {
            self.pkg.sections.push(Section {
                kind,
                name: None,
                line,
                options: Vec::new(),
            });
            self.current = Some(self.pkg.sections.len() - 1);
            return Ok(());
        }
        let existing = self
            .pkg
            .sections
            .iter()
            .position(|s| s.name.as_deref() == Some(&name));
        match existing {
            Some(i) if self.pkg.sections[i].kind != kind => Err(Syntax::TypeClash {
                name,
                first: self.pkg.sections[i].kind.clone(),
                second: kind,
            }),
            Some(i) => {
                self.current = Some(i);
                Ok(())
            }
            None => {
                self.pkg.sections.push(Section {
                    kind,
                    name: Some(name),
                    line,
                    options: Vec::new(),
                });
                self.current = Some(self.pkg.sections.len() - 1);
                Ok(())
            }
        }
    }

    fn parse_option(&mut self, list: bool, line: usize) -> Result<(), Syntax> {
        let statement = if list { "list" } else { "option" };
        let Some(si) = self.current else {
            return Err(Syntax::OutsideSection(statement.into()));
        };
        self.skip_word(Syntax::MissingName(statement.into()))?;
        let n = self.next_arg(Some(Syntax::MissingName(statement.into())), true, false)?;
        self.skip_whitespace();
        let valueless = matches!(self.cur(), 0 | b';' | b'#');
        let v = self.next_arg(None, false, false)?;
        self.assert_eol(statement)?;
        let name = lossy(self.str_at(n));
        let value = self.str_at(v);
        let value = lossy(value);
        let options = &mut self.pkg.sections[si].options;
        let existing = options.iter().position(|o| o.name == name);
        if list {
            match existing {
                Some(i) if options[i].is_list => options[i].items.push((value, line)),
                Some(i) => {
                    // A string becomes a list: libuci re-creates it at the end.
                    let mut o = options.remove(i);
                    o.is_list = true;
                    o.items.push((value, line));
                    options.push(o);
                }
                None => options.push(UciOption {
                    name,
                    is_list: true,
                    items: vec![(value, line)],
                }),
            }
            return Ok(());
        }
        if value.is_empty() {
            // libuci's uci_set ignores an empty value while loading a file (it would delete
            // only through `uci set`): an earlier value stays.
            if valueless {
                self.pkg.valueless.push((si, name, line));
            }
            return Ok(());
        }
        if let Some(i) = existing {
            if !options[i].is_list && options[i].items[0].0 == value {
                options[i].items[0].1 = line;
                return Ok(());
            }
            options.remove(i);
        }
        options.push(UciOption {
            name,
            is_list: false,
            items: vec![(value, line)],
        });
        Ok(())
    }
}
