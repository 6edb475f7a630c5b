//! Time-varying numbers: constants, expressions in `t` and `f`, and keyframe
//! strings (docs/design.md §4).
//!
//! # Why a hand-written parser
//!
//! The project prefers a well-kept crate for this, and three were weighed:
//!
//! - `evalexpr` has integer arithmetic (`1/2 == 0`), which silently breaks
//!   pytti-style weights such as `1/2*sin(t)`;
//! - `meval` has been unmaintained since 2017 and reports no positions;
//! - `exmex` has float semantics but treats every unknown identifier as a
//!   variable and reports errors without a column.
//!
//! docs/design.md §4 requires every syntax error and every unknown name to surface at
//! load time with the setting name and the column, and the grammar we need is
//! tiny (numbers, `t`, `f`, two constants, `+ - * / % ^`, a fixed list of
//! functions). A ~300-line Pratt parser that compiles to a constant-folded
//! tree meets all of that exactly and evaluates in nanoseconds, so it is what
//! this module does.
//!
//! # Grammar
//!
//! ```text
//! expr    := term (('+' | '-') term)*
//! term    := unary (('*' | '/' | '%') unary)*
//! unary   := ('-' | '+') unary | power
//! power   := atom (('^' | '**') unary)?        right-associative, binds tighter than unary minus
//! atom    := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'
//! ```
//!
//! `%` is the floored modulo Python users expect (`-1 % 3 == 2`). All
//! arithmetic is `f64`.

use crate::audio::AudioReactivity;
use serde::{Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// A syntax or name error inside one expression, with a 1-based column
/// counted in characters from the start of the text that was parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// 1-based character column in the parsed text.
    pub column: usize,
    /// What went wrong and, where possible, what to write instead.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// Names of the functions an expression may call, with their arity
/// (`None` = two or more arguments).
const FUNCTIONS: &[(&str, Option<usize>)] = &[
    ("sin", Some(1)),
    ("cos", Some(1)),
    ("tan", Some(1)),
    ("asin", Some(1)),
    ("acos", Some(1)),
    ("atan", Some(1)),
    ("atan2", Some(2)),
    ("sinh", Some(1)),
    ("cosh", Some(1)),
    ("tanh", Some(1)),
    ("exp", Some(1)),
    ("ln", Some(1)),
    ("log10", Some(1)),
    ("sqrt", Some(1)),
    ("abs", Some(1)),
    ("min", None),
    ("max", None),
    ("pow", Some(2)),
    ("floor", Some(1)),
    ("ceil", Some(1)),
    ("round", Some(1)),
    ("sign", Some(1)),
    ("clamp", Some(3)),
];

/// Names usable without a call.
const VARIABLES: &[&str] = &["t", "f", "pi", "e"];

/// Whether `name` is a built-in name of expressions (a variable, constant
/// or function), which an audio filter's `variable_name` may not take.
pub fn is_builtin_name(name: &str) -> bool {
    VARIABLES.contains(&name) || FUNCTIONS.iter().any(|(n, _)| *n == name)
}

/// Whether `name` is an identifier expressions can read: a letter or `_`,
/// then letters, digits and `_` (the lexer's rule for names).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// The audio band values a scene's expressions read (docs/design.md §12):
/// each `input_audio_filters` entry's `variable_name` is a variable whose
/// value at frame index `f` is [`AudioReactivity::values`]`(f)`, constant
/// within the frame. Shared by every expression of a scene; compared by
/// identity.
#[derive(Clone)]
pub struct AudioVars(pub Arc<AudioReactivity>);

impl AudioVars {
    /// The filters' variable names, in order.
    pub fn names(&self) -> &[String] {
        self.0.names()
    }

    /// The values at frame index `f` (0-based; 0 after the track's end).
    #[inline]
    pub fn values_at(&self, f: f64) -> &[f64] {
        // `as` saturates: a negative or NaN `f` reads frame 0, a huge one
        // reads past the end (zeros).
        self.0.values(f as usize)
    }
}

impl PartialEq for AudioVars {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for AudioVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AudioVars({:?}, {} frames with audio)",
            self.names(),
            self.0.frames_with_audio()
        )
    }
}

thread_local! {
    /// The audio variables expressions parsed on this thread may read; set
    /// only for the duration of [`with_audio_vars`].
    static AUDIO_SCOPE: RefCell<Option<AudioVars>> = const { RefCell::new(None) };
}

/// Runs `body` with `vars`' names known to every expression it parses (on
/// this thread), each parsed expression that reads one keeping `vars` to
/// evaluate it. The scene loader wraps its reading in this, so that prompt
/// weights, weight strings and motion all see the audio variables without
/// every parser in between passing them on. The previous scope is restored
/// afterwards, also when `body` panics.
pub fn with_audio_vars<R>(vars: Option<AudioVars>, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<AudioVars>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            AUDIO_SCOPE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = AUDIO_SCOPE.with(|s| std::mem::replace(&mut *s.borrow_mut(), vars));
    let _restore = Restore(previous);
    body()
}

/// The index of `name` among the audio variables in scope.
fn audio_var_index(name: &str) -> Option<usize> {
    AUDIO_SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|v| v.names().iter().position(|n| n == name))
    })
}

/// The audio variables in scope (see [`with_audio_vars`]).
fn audio_scope() -> Option<AudioVars> {
    AUDIO_SCOPE.with(|s| s.borrow().clone())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fn1 {
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Exp,
    Ln,
    Log10,
    Sqrt,
    Abs,
    Floor,
    Ceil,
    Round,
    Sign,
    Neg,
}

impl Fn1 {
    #[inline]
    fn apply(self, x: f64) -> f64 {
        match self {
            Fn1::Sin => x.sin(),
            Fn1::Cos => x.cos(),
            Fn1::Tan => x.tan(),
            Fn1::Asin => x.asin(),
            Fn1::Acos => x.acos(),
            Fn1::Atan => x.atan(),
            Fn1::Sinh => x.sinh(),
            Fn1::Cosh => x.cosh(),
            Fn1::Tanh => x.tanh(),
            Fn1::Exp => x.exp(),
            Fn1::Ln => x.ln(),
            Fn1::Log10 => x.log10(),
            Fn1::Sqrt => x.sqrt(),
            Fn1::Abs => x.abs(),
            Fn1::Floor => x.floor(),
            Fn1::Ceil => x.ceil(),
            Fn1::Round => x.round(),
            // sign(0) = 0, as in numpy and most users' expectation.
            Fn1::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            Fn1::Neg => -x,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fn2 {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Min,
    Max,
}

impl Fn2 {
    #[inline]
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Fn2::Add => a + b,
            Fn2::Sub => a - b,
            Fn2::Mul => a * b,
            Fn2::Div => a / b,
            Fn2::Mod => a - b * (a / b).floor(),
            Fn2::Pow => a.powf(b),
            Fn2::Atan2 => a.atan2(b),
            Fn2::Min => a.min(b),
            Fn2::Max => a.max(b),
        }
    }
}

/// A compiled expression tree. Constant sub-trees are folded at compile time.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Const(f64),
    T,
    F,
    /// The audio variable with this index (see [`AudioVars`]).
    Var(usize),
    Un(Fn1, Box<Node>),
    Bin(Fn2, Box<Node>, Box<Node>),
    Clamp(Box<[Node; 3]>),
}

impl Node {
    /// Whether the value depends on `t` (else it is constant within a frame).
    fn uses_t(&self) -> bool {
        match self {
            Node::Const(_) | Node::F | Node::Var(_) => false,
            Node::T => true,
            Node::Un(_, a) => a.uses_t(),
            Node::Bin(_, a, b) => a.uses_t() || b.uses_t(),
            Node::Clamp(args) => args.iter().any(Node::uses_t),
        }
    }

    /// Whether the value reads an audio variable.
    fn uses_audio(&self) -> bool {
        match self {
            Node::Const(_) | Node::F | Node::T => false,
            Node::Var(_) => true,
            Node::Un(_, a) => a.uses_audio(),
            Node::Bin(_, a, b) => a.uses_audio() || b.uses_audio(),
            Node::Clamp(args) => args.iter().any(Node::uses_audio),
        }
    }

    /// The value at `t`, `f` with the audio variables' values `vars`.
    #[inline]
    fn eval(&self, t: f64, f: f64, vars: &[f64]) -> f64 {
        match self {
            Node::Const(v) => *v,
            Node::T => t,
            Node::F => f,
            Node::Var(i) => vars.get(*i).copied().unwrap_or(0.0),
            Node::Un(op, a) => op.apply(a.eval(t, f, vars)),
            Node::Bin(op, a, b) => op.apply(a.eval(t, f, vars), b.eval(t, f, vars)),
            Node::Clamp(args) => {
                let x = args[0].eval(t, f, vars);
                let lo = args[1].eval(t, f, vars);
                let hi = args[2].eval(t, f, vars);
                // Written out rather than f64::clamp, which panics when lo > hi.
                if x < lo {
                    lo
                } else if x > hi {
                    hi
                } else {
                    x
                }
            }
        }
    }

    fn un(op: Fn1, a: Node) -> Node {
        match a {
            Node::Const(v) => Node::Const(op.apply(v)),
            a => Node::Un(op, Box::new(a)),
        }
    }

    fn bin(op: Fn2, a: Node, b: Node) -> Node {
        match (a, b) {
            (Node::Const(x), Node::Const(y)) => Node::Const(op.apply(x, y)),
            (a, b) => Node::Bin(op, Box::new(a), Box::new(b)),
        }
    }
}

/// A parsed expression in `t` (seconds), `f` (0-based frame index) and
/// the audio variables in scope when it was parsed ([`with_audio_vars`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    root: Node,
    /// The audio values, when the expression reads an audio variable.
    audio: Option<AudioVars>,
}

impl Expr {
    /// Parses `text`; errors carry the 1-based character column in `text`.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let tokens = lex(text)?;
        if tokens.len() > MAX_TOKENS {
            return Err(ExprError {
                column: tokens[MAX_TOKENS].col,
                message: format!(
                    "expression too long (more than {MAX_TOKENS} tokens); split it up"
                ),
            });
        }
        let mut p = Parser {
            tokens: &tokens,
            pos: 0,
            end_col: text.chars().count() + 1,
        };
        if tokens.is_empty() {
            return Err(ExprError {
                column: 1,
                message: "empty expression: write a number or an expression in t".into(),
            });
        }
        let root = p.expr()?;
        if let Some(tok) = p.peek() {
            return Err(ExprError {
                column: tok.col,
                message: format!(
                    "unexpected {} after a complete expression (missing operator?)",
                    tok.kind.describe()
                ),
            });
        }
        let audio = if root.uses_audio() {
            audio_scope()
        } else {
            None
        };
        Ok(Expr { root, audio })
    }

    /// The value at time `t` (seconds) and frame index `f` (audio
    /// variables read frame `f`'s values).
    #[inline]
    pub fn eval(&self, t: f64, f: f64) -> f64 {
        match &self.audio {
            Some(a) => self.root.eval(t, f, a.values_at(f)),
            None => self.root.eval(t, f, &[]),
        }
    }

    /// The value when it does not depend on `t` or `f`.
    pub fn as_constant(&self) -> Option<f64> {
        match self.root {
            Node::Const(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the value depends on `t`, and so may change within a frame.
    pub fn uses_t(&self) -> bool {
        self.root.uses_t()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    Num(f64),
    Name(String),
    Op(char),
    Pow,
    LParen,
    RParen,
    Comma,
}

impl TokKind {
    fn describe(&self) -> String {
        match self {
            TokKind::Num(v) => format!("number {v}"),
            TokKind::Name(n) => format!("name `{n}`"),
            TokKind::Op(c) => format!("`{c}`"),
            TokKind::Pow => "`**`".into(),
            TokKind::LParen => "`(`".into(),
            TokKind::RParen => "`)`".into(),
            TokKind::Comma => "`,`".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Tok {
    kind: TokKind,
    col: usize,
}

fn lex(text: &str) -> Result<Vec<Tok>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            // exponent: e or E, optional sign, digits
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let s: String = chars[start..i].iter().collect();
            let v: f64 = s.parse().map_err(|_| ExprError {
                column: col,
                message: format!("`{s}` is not a number"),
            })?;
            out.push(Tok {
                kind: TokKind::Num(v),
                col,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok {
                kind: TokKind::Name(chars[start..i].iter().collect()),
                col,
            });
            continue;
        }
        let kind = match c {
            '+' | '-' | '/' | '%' | '^' => TokKind::Op(c),
            '*' => {
                if chars.get(i + 1) == Some(&'*') {
                    i += 1;
                    TokKind::Pow
                } else {
                    TokKind::Op('*')
                }
            }
            '(' => TokKind::LParen,
            ')' => TokKind::RParen,
            ',' => TokKind::Comma,
            _ => {
                return Err(ExprError {
                    column: col,
                    message: format!(
                        "unexpected character `{c}`; expressions use numbers, t, f, pi, e, \
                         + - * / % ^ and functions such as sin(t)"
                    ),
                })
            }
        };
        out.push(Tok { kind, col });
        i += 1;
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: &'a [Tok],
    pos: usize,
    end_col: usize,
}

/// Longer expressions are refused: evaluation and drop recurse over the tree.
const MAX_TOKENS: usize = 2000;

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn err_here(&self, what: &str) -> ExprError {
        match self.peek() {
            Some(tok) => ExprError {
                column: tok.col,
                message: format!("expected {what}, found {}", tok.kind.describe()),
            },
            None => ExprError {
                column: self.end_col,
                message: format!("expected {what}, found the end of the expression"),
            },
        }
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        self.expr_depth(0)
    }

    fn expr_depth(&mut self, depth: usize) -> Result<Node, ExprError> {
        if depth > MAX_DEPTH {
            return Err(self.err_here("a shallower expression (nested too deeply)"));
        }
        let mut lhs = self.term(depth)?;
        while let Some(Tok {
            kind: TokKind::Op(c @ ('+' | '-')),
            ..
        }) = self.peek()
        {
            let op = if *c == '+' { Fn2::Add } else { Fn2::Sub };
            self.pos += 1;
            let rhs = self.term(depth)?;
            lhs = Node::bin(op, lhs, rhs);
        }
        Ok(lhs)
    }

    fn term(&mut self, depth: usize) -> Result<Node, ExprError> {
        let mut lhs = self.unary(depth)?;
        while let Some(Tok {
            kind: TokKind::Op(c @ ('*' | '/' | '%')),
            ..
        }) = self.peek()
        {
            let op = match c {
                '*' => Fn2::Mul,
                '/' => Fn2::Div,
                _ => Fn2::Mod,
            };
            self.pos += 1;
            let rhs = self.unary(depth)?;
            lhs = Node::bin(op, lhs, rhs);
        }
        Ok(lhs)
    }

    fn unary(&mut self, depth: usize) -> Result<Node, ExprError> {
        if depth > MAX_DEPTH {
            return Err(self.err_here("a shallower expression (nested too deeply)"));
        }
        match self.peek().map(|t| &t.kind) {
            Some(TokKind::Op('-')) => {
                self.pos += 1;
                Ok(Node::un(Fn1::Neg, self.unary(depth + 1)?))
            }
            Some(TokKind::Op('+')) => {
                self.pos += 1;
                self.unary(depth + 1)
            }
            _ => self.power(depth),
        }
    }

    fn power(&mut self, depth: usize) -> Result<Node, ExprError> {
        let base = self.atom(depth)?;
        match self.peek().map(|t| &t.kind) {
            Some(TokKind::Op('^')) | Some(TokKind::Pow) => {
                self.pos += 1;
                let exp = self.unary(depth + 1)?;
                Ok(Node::bin(Fn2::Pow, base, exp))
            }
            _ => Ok(base),
        }
    }

    fn atom(&mut self, depth: usize) -> Result<Node, ExprError> {
        let Some(tok) = self.next() else {
            self.pos -= 1;
            return Err(self.err_here("a number, a name or `(`"));
        };
        match tok.kind {
            TokKind::Num(v) => Ok(Node::Const(v)),
            TokKind::LParen => {
                let inner = self.expr_depth(depth + 1)?;
                match self.next() {
                    Some(Tok {
                        kind: TokKind::RParen,
                        ..
                    }) => Ok(inner),
                    _ => {
                        self.pos -= 1;
                        Err(self.err_here("`)`"))
                    }
                }
            }
            TokKind::Name(name) => self.name(&name, tok.col, depth),
            _ => {
                self.pos -= 1;
                Err(self.err_here("a number, a name or `(`"))
            }
        }
    }

    fn name(&mut self, name: &str, col: usize, depth: usize) -> Result<Node, ExprError> {
        let is_call = matches!(self.peek().map(|t| &t.kind), Some(TokKind::LParen));
        if !is_call {
            return match name {
                "t" => Ok(Node::T),
                "f" => Ok(Node::F),
                "pi" => Ok(Node::Const(std::f64::consts::PI)),
                "e" => Ok(Node::Const(std::f64::consts::E)),
                _ if FUNCTIONS.iter().any(|(n, _)| *n == name) => Err(ExprError {
                    column: col,
                    message: format!("`{name}` is a function: write {name}(...)"),
                }),
                _ => audio_var_index(name)
                    .map(Node::Var)
                    .ok_or_else(|| unknown_name(name, col)),
            };
        }
        let Some(&(_, arity)) = FUNCTIONS.iter().find(|(n, _)| *n == name) else {
            return Err(unknown_name(name, col));
        };
        self.pos += 1; // '('
        let mut args = Vec::new();
        if matches!(self.peek().map(|t| &t.kind), Some(TokKind::RParen)) {
            self.pos += 1;
        } else {
            loop {
                args.push(self.expr_depth(depth + 1)?);
                match self.next().map(|t| t.kind) {
                    Some(TokKind::Comma) => continue,
                    Some(TokKind::RParen) => break,
                    _ => {
                        self.pos -= 1;
                        return Err(self.err_here("`,` or `)`"));
                    }
                }
            }
        }
        let ok = match arity {
            Some(n) => args.len() == n,
            None => args.len() >= 2,
        };
        if !ok {
            let want = match arity {
                Some(1) => "1 argument".to_string(),
                Some(n) => format!("{n} arguments"),
                None => "2 or more arguments".to_string(),
            };
            return Err(ExprError {
                column: col,
                message: format!("{name}() takes {want}, got {}", args.len()),
            });
        }
        let mut it = args.into_iter();
        let mut a = || it.next().unwrap_or(Node::Const(0.0));
        let node = match name {
            "atan2" => Node::bin(Fn2::Atan2, a(), a()),
            "pow" => Node::bin(Fn2::Pow, a(), a()),
            "min" | "max" => {
                let op = if name == "min" { Fn2::Min } else { Fn2::Max };
                let mut acc = a();
                for next in it {
                    acc = Node::bin(op, acc, next);
                }
                acc
            }
            "clamp" => {
                let (x, lo, hi) = (a(), a(), a());
                match (&x, &lo, &hi) {
                    (Node::Const(_), Node::Const(_), Node::Const(_)) => {
                        Node::Const(Node::Clamp(Box::new([x, lo, hi])).eval(0.0, 0.0, &[]))
                    }
                    _ => Node::Clamp(Box::new([x, lo, hi])),
                }
            }
            _ => {
                let op = match name {
                    "sin" => Fn1::Sin,
                    "cos" => Fn1::Cos,
                    "tan" => Fn1::Tan,
                    "asin" => Fn1::Asin,
                    "acos" => Fn1::Acos,
                    "atan" => Fn1::Atan,
                    "sinh" => Fn1::Sinh,
                    "cosh" => Fn1::Cosh,
                    "tanh" => Fn1::Tanh,
                    "exp" => Fn1::Exp,
                    "ln" => Fn1::Ln,
                    "log10" => Fn1::Log10,
                    "sqrt" => Fn1::Sqrt,
                    "abs" => Fn1::Abs,
                    "floor" => Fn1::Floor,
                    "ceil" => Fn1::Ceil,
                    "round" => Fn1::Round,
                    _ => Fn1::Sign,
                };
                Node::un(op, a())
            }
        };
        Ok(node)
    }
}

fn unknown_name(name: &str, col: usize) -> ExprError {
    let audio: Vec<String> = audio_scope()
        .map(|a| a.names().to_vec())
        .unwrap_or_default();
    let all = VARIABLES
        .iter()
        .copied()
        .chain(audio.iter().map(String::as_str))
        .chain(FUNCTIONS.iter().map(|(n, _)| *n));
    let hint = match crate::catalog::closest(name, all) {
        Some(n) => format!("did you mean `{n}`?"),
        None => "known names are t (seconds), f (frame index), pi, e and the functions \
                 sin cos tan asin acos atan atan2 sinh cosh tanh exp ln log10 sqrt abs min \
                 max pow floor ceil round sign clamp"
            .to_string(),
    };
    ExprError {
        column: col,
        message: format!("unknown name `{name}`: {hint}"),
    }
}

/// A time-varying number: a constant, an expression, or a keyframe string.
///
/// Parsed once when the scene loads; [`Param::eval`] is a tree walk with no
/// allocation. The original text is kept so that the resolved settings can be
/// written back exactly as the user wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    source: String,
    kind: ParamKind,
}

#[derive(Debug, Clone, PartialEq)]
enum ParamKind {
    Const(f64),
    Expr(Expr),
    /// Sorted by frame; linear in between, held outside.
    Keys(Vec<(f64, Expr)>),
}

impl Param {
    /// A constant.
    pub fn constant(v: f64) -> Param {
        Param {
            source: fmt_number(v),
            kind: ParamKind::Const(v),
        }
    }

    /// Parses a number, an expression or a keyframe string
    /// (`"0:(0), 24:(3)"`). Errors carry the column in `text`.
    pub fn parse(text: &str) -> Result<Param, ExprError> {
        let kind = if looks_like_keyframes(text) {
            ParamKind::Keys(parse_keyframes(text)?)
        } else {
            let e = Expr::parse(text)?;
            match e.as_constant() {
                Some(v) => ParamKind::Const(v),
                None => ParamKind::Expr(e),
            }
        };
        Ok(Param {
            source: text.to_string(),
            kind,
        })
    }

    /// The value at time `t` (seconds) and frame index `f` (keyframes are
    /// interpolated on `f`).
    #[inline]
    pub fn eval(&self, t: f64, f: f64) -> f64 {
        match &self.kind {
            ParamKind::Const(v) => *v,
            ParamKind::Expr(e) => e.eval(t, f),
            ParamKind::Keys(keys) => eval_keys(keys, t, f),
        }
    }

    /// `Some(v)` when the value never changes.
    pub fn as_constant(&self) -> Option<f64> {
        match self.kind {
            ParamKind::Const(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the value may change from one step to the next within a
    /// frame (it reads `t`); otherwise it changes at most once per frame.
    pub fn varies_within_frame(&self) -> bool {
        match &self.kind {
            ParamKind::Const(_) => false,
            ParamKind::Expr(e) => e.uses_t(),
            ParamKind::Keys(keys) => keys.iter().any(|(_, e)| e.uses_t()),
        }
    }

    /// The text this was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Constants serialize as numbers, everything else as its source text, so a
/// written-out scene file loads back to the same values.
impl Serialize for Param {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.kind {
            ParamKind::Const(v) if v.is_finite() => s.serialize_f64(v),
            _ => s.serialize_str(&self.source),
        }
    }
}

fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[inline]
fn eval_keys(keys: &[(f64, Expr)], t: f64, f: f64) -> f64 {
    let (first, last) = (&keys[0], &keys[keys.len() - 1]);
    if f <= first.0 || f.is_nan() {
        return first.1.eval(t, f);
    }
    if f >= last.0 {
        return last.1.eval(t, f);
    }
    // keys are few; a linear scan beats a binary search in practice
    let i = keys.iter().position(|k| k.0 > f).unwrap_or(keys.len() - 1);
    let (f0, e0) = &keys[i - 1];
    let (f1, e1) = &keys[i];
    let a = (f - f0) / (f1 - f0);
    let v0 = e0.eval(t, f);
    let v1 = e1.eval(t, f);
    v0 + (v1 - v0) * a
}

/// True for text shaped like `number:(`, the unambiguous start of a
/// keyframe string (used where `weight:stop` must be told apart).
pub(crate) fn is_keyframe_string(text: &str) -> bool {
    looks_like_keyframes(text) && {
        let s = text.trim_start();
        let colon = s.find(':').unwrap_or(0);
        s[colon + 1..].trim_start().starts_with('(')
    }
}

/// A keyframe string starts with `number:` (after optional spaces) and its
/// first value is parenthesised: `0:(1)`.
fn looks_like_keyframes(text: &str) -> bool {
    let s = text.trim_start();
    let digits = s
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
        .count();
    if digits == 0 {
        return false;
    }
    s[digits..].trim_start().starts_with(':')
}

fn parse_keyframes(text: &str) -> Result<Vec<(f64, Expr)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut keys: Vec<(f64, Expr)> = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    const HINT: &str = "keyframes are written frame:(value), e.g. \"0:(0), 24:(3)\"";
    loop {
        skip_ws(&mut i);
        // frame number
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
            i += 1;
        }
        if start == i {
            return Err(ExprError {
                column: i + 1,
                message: format!("expected a frame number; {HINT}"),
            });
        }
        let num: String = chars[start..i].iter().collect();
        let frame: f64 = num.parse().map_err(|_| ExprError {
            column: start + 1,
            message: format!("`{num}` is not a frame number; {HINT}"),
        })?;
        skip_ws(&mut i);
        if chars.get(i) != Some(&':') {
            return Err(ExprError {
                column: i + 1,
                message: format!("expected `:` after the frame number; {HINT}"),
            });
        }
        i += 1;
        skip_ws(&mut i);
        if chars.get(i) != Some(&'(') {
            return Err(ExprError {
                column: i + 1,
                message: format!("expected `(` before the value; {HINT}"),
            });
        }
        let open = i;
        let mut depth = 0usize;
        let mut close = None;
        while i < chars.len() {
            match chars[i] {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let Some(close) = close else {
            return Err(ExprError {
                column: open + 1,
                message: "this `(` is never closed".into(),
            });
        };
        let inner: String = chars[open + 1..close].iter().collect();
        let expr = Expr::parse(&inner).map_err(|e| ExprError {
            column: open + 1 + e.column,
            message: e.message,
        })?;
        if keys.iter().any(|(f, _)| *f == frame) {
            return Err(ExprError {
                column: start + 1,
                message: format!("frame {num} has two keyframes; keep one"),
            });
        }
        keys.push((frame, expr));
        i = close + 1;
        skip_ws(&mut i);
        match chars.get(i) {
            None => break,
            Some(',') => {
                i += 1;
                skip_ws(&mut i);
                if i == chars.len() {
                    break; // trailing comma is harmless
                }
            }
            Some(c) => {
                return Err(ExprError {
                    column: i + 1,
                    message: format!("unexpected `{c}`: separate keyframes with `,`; {HINT}"),
                })
            }
        }
    }
    keys.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str, t: f64, f: f64) -> f64 {
        Param::parse(s).unwrap().eval(t, f)
    }

    #[test]
    fn float_semantics_and_precedence() {
        assert_eq!(ev("1/2", 0.0, 0.0), 0.5);
        assert_eq!(ev("-2^2", 0.0, 0.0), -4.0);
        assert_eq!(ev("2^3^2", 0.0, 0.0), 512.0);
        assert_eq!(ev("2**-1", 0.0, 0.0), 0.5);
        assert_eq!(ev("-1 % 3", 0.0, 0.0), 2.0);
        assert_eq!(ev("1 + 2 * 3", 0.0, 0.0), 7.0);
        assert_eq!(ev("1e-3*1000", 0.0, 0.0), 1.0);
        assert_eq!(ev(".5", 0.0, 0.0), 0.5);
        assert_eq!(ev("t*2 + f", 1.5, 4.0), 7.0);
        assert_eq!(ev("clamp(t, 0, 1)", 3.0, 0.0), 1.0);
        assert_eq!(ev("min(3, t, 2)", 1.0, 0.0), 1.0);
        assert_eq!(ev("max(t, 2)", 1.0, 0.0), 2.0);
        assert!((ev("sin(pi/2)", 0.0, 0.0) - 1.0).abs() < 1e-12);
        assert_eq!(ev("sign(-3)", 0.0, 0.0), -1.0);
        assert_eq!(ev("atan2(0, 1)", 0.0, 0.0), 0.0);
        assert!((ev("ln(e)", 0.0, 0.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn errors_have_columns() {
        let e = Param::parse("1 + sine(t)").unwrap_err();
        assert_eq!(e.column, 5);
        assert!(e.message.contains("did you mean `sin`"), "{}", e.message);
        let e = Param::parse("1 +").unwrap_err();
        assert_eq!(e.column, 4);
        let e = Param::parse("(1 + 2").unwrap_err();
        assert_eq!(e.column, 7);
        let e = Param::parse("2 3").unwrap_err();
        assert_eq!(e.column, 3);
        let e = Param::parse("pow(1)").unwrap_err();
        assert!(e.message.contains("2 arguments"));
        let e = Param::parse("sin").unwrap_err();
        assert!(e.message.contains("function"));
        let e = Param::parse("").unwrap_err();
        assert_eq!(e.column, 1);
    }

    #[test]
    fn keyframes() {
        let p = Param::parse("0:(0), 24:(3), 48:(-1)").unwrap();
        assert_eq!(p.eval(0.0, -5.0), 0.0);
        assert_eq!(p.eval(0.0, 12.0), 1.5);
        assert_eq!(p.eval(0.0, 24.0), 3.0);
        assert_eq!(p.eval(0.0, 36.0), 1.0);
        assert_eq!(p.eval(0.0, 100.0), -1.0);
        let p = Param::parse("10:(t), 0:(0)").unwrap();
        assert_eq!(p.eval(2.0, 5.0), 1.0);
        let e = Param::parse("0:(0), 24:(sinn(t))").unwrap_err();
        assert_eq!(e.column, 12);
        let e = Param::parse("0:(0), 0:(1)").unwrap_err();
        assert!(e.message.contains("two keyframes"));
        let e = Param::parse("0:(0) 24:(1)").unwrap_err();
        assert_eq!(e.column, 7);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert!(Param::parse(&s).is_err());
        let s = "-".repeat(10_000) + "1";
        assert!(Param::parse(&s).is_err());
    }
}
