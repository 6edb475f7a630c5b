//! From a preset's YAML tree to scene settings: merge over pytti's
//! defaults, resolve interpolations, refuse what zoetrope does not render,
//! and map pytti's values onto zoetrope's settings.

use super::pytti::{self, CLIP_FLAGS};
use super::yaml::{self, Kind, Node, Pos};
use crate::scene::reader::suggest;
use crate::scene::sections;
use crate::{Error, Result};

/// The settings to hand to the scene reader, and the notes for the user.
pub struct Settings {
    pub settings: Vec<(String, Pos, Node)>,
    pub notes: Vec<String>,
}

/// One setting after the merge: name, key position, value, whether the
/// preset file gave it.
struct Entry {
    key: String,
    key_pos: Pos,
    node: Node,
    from_file: bool,
}

struct Ctx<'a> {
    origin: &'a str,
    merged: Vec<Entry>,
    notes: Vec<String>,
}

impl Ctx<'_> {
    fn err(&self, pos: Pos, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::input(format!(
            "{}: setting `{key}`: {msg}",
            super::at(self.origin, pos)
        ))
    }

    fn get(&self, key: &str) -> Option<&Entry> {
        self.merged.iter().find(|e| e.key == key)
    }
}

/// Reads the preset, merges it over pytti's defaults and translates it.
pub fn settings(text: &str, origin: &str) -> Result<Settings> {
    let root = yaml::parse(text, origin)?;
    let Kind::Map(file) = root.kind else {
        return Err(Error::input(format!(
            "{}: a preset is a mapping of `name: value` lines, not {}",
            super::at(origin, root.pos),
            root.type_name()
        )));
    };
    let mut ctx = Ctx {
        origin,
        merged: defaults(),
        notes: Vec::new(),
    };
    for (raw, key_pos, node) in file {
        let key = raw.trim_start_matches('+').to_string();
        check_key(&ctx, &key, &raw, key_pos, &node)?;
        if key == "defaults" {
            continue;
        }
        let entry = Entry {
            key: key.clone(),
            key_pos,
            node,
            from_file: true,
        };
        match ctx.merged.iter_mut().find(|e| e.key == key) {
            Some(e) => *e = entry,
            None => ctx.merged.push(entry),
        }
    }
    resolve_all(&mut ctx)?;
    let settings = build(&mut ctx)?;
    Ok(Settings {
        settings,
        notes: ctx.notes,
    })
}

/// pytti's defaults as entries, positioned off the file.
fn defaults() -> Vec<Entry> {
    let root = yaml::parse(pytti::DEFAULTS, "pytti defaults").expect("pytti defaults parse");
    let Kind::Map(entries) = root.kind else {
        unreachable!("pytti defaults are a mapping")
    };
    entries
        .into_iter()
        .map(|(key, _, mut node)| {
            unposition(&mut node);
            Entry {
                key,
                key_pos: Pos::DEFAULT,
                node,
                from_file: false,
            }
        })
        .collect()
}

fn unposition(node: &mut Node) {
    node.pos = Pos::DEFAULT;
    match &mut node.kind {
        Kind::Seq(items) => items.iter_mut().for_each(unposition),
        Kind::Map(entries) => entries.iter_mut().for_each(|(_, p, v)| {
            *p = Pos::DEFAULT;
            unposition(v)
        }),
        _ => {}
    }
}

/// Refuses Hydra sections that would pull in more configuration and
/// names zoetrope does not know.
fn check_key(ctx: &Ctx, key: &str, raw: &str, pos: Pos, node: &Node) -> Result<()> {
    let at = super::at(ctx.origin, pos);
    match key {
        "hydra" => {
            return Err(Error::input(format!(
                "{at}: `{raw}`: Hydra's own configuration (`hydra:`) is not read by zoetrope; \
                 a preset holds settings only: remove the section"
            )))
        }
        "defaults" => return check_defaults_list(ctx, node),
        _ => {}
    }
    let known = ctx.get(key).is_some() || sections::is_known(key);
    if !known {
        let names = pytti_names().chain(sections::known_settings());
        return Err(Error::input(format!(
            "{at}: unknown setting `{raw}`{}",
            suggest(key, names)
        )));
    }
    Ok(())
}

fn pytti_names() -> impl Iterator<Item = &'static str> {
    pytti::DEFAULTS
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim()))
        .filter(|k| !k.is_empty())
}

/// pytti's own `defaults:` list (`- _self_`, `- conf: _empty`) pulls in
/// nothing and is accepted; any other entry would load another file.
fn check_defaults_list(ctx: &Ctx, node: &Node) -> Result<()> {
    let refuse = |pos: Pos, what: String| {
        Error::input(format!(
            "{}: `defaults:` entry {what} would pull in another config file; zoetrope reads \
             one preset: copy that file's settings into this one and remove the entry",
            super::at(ctx.origin, pos)
        ))
    };
    let Kind::Seq(items) = &node.kind else {
        return Err(refuse(node.pos, format!("({})", node.type_name())));
    };
    for item in items {
        match &item.kind {
            Kind::Str(s) if s == "_self_" => {}
            Kind::Map(m) if m.len() == 1 => {
                let (k, _, v) = &m[0];
                if !(k == "conf" && v.kind == Kind::Str("_empty".into())) {
                    let v = describe(v);
                    return Err(refuse(item.pos, format!("`{k}: {v}`")));
                }
            }
            _ => return Err(refuse(item.pos, format!("`{}`", describe(item)))),
        }
    }
    Ok(())
}

/// A scalar as written, for messages.
pub fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Null => "null".into(),
        Kind::Bool(b) => b.to_string(),
        Kind::Int(i) => i.to_string(),
        Kind::Float(x) => x.to_string(),
        Kind::Str(s) => s.clone(),
        Kind::Seq(_) => "[…]".into(),
        Kind::Map(_) => "{…}".into(),
    }
}

/// Resolves `${…}` in every string value.
fn resolve_all(ctx: &mut Ctx) -> Result<()> {
    for i in 0..ctx.merged.len() {
        let key = ctx.merged[i].key.clone();
        let node = ctx.merged[i].node.clone();
        let resolved = resolve(ctx, &key, &node, 0)?;
        ctx.merged[i].node = resolved;
    }
    Ok(())
}

/// The deepest chain of `${a}` → `${b}` → … followed.
const MAX_DEPTH: usize = 16;

/// `node` with its interpolations replaced: a string that is exactly one
/// `${name}` takes the referenced value (and type); interpolations inside
/// a longer string are replaced by the value's text. `\${` is a literal.
fn resolve(ctx: &Ctx, key: &str, node: &Node, depth: usize) -> Result<Node> {
    let kind = match &node.kind {
        Kind::Str(s) if s.contains("${") => return resolve_str(ctx, key, s, node.pos, depth),
        Kind::Seq(items) => Kind::Seq(
            items
                .iter()
                .map(|n| resolve(ctx, key, n, depth))
                .collect::<Result<_>>()?,
        ),
        Kind::Map(entries) => Kind::Map(
            entries
                .iter()
                .map(|(k, p, v)| Ok((k.clone(), *p, resolve(ctx, key, v, depth)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    };
    Ok(Node {
        pos: node.pos,
        kind,
    })
}

/// The pieces of a string: literal text and `${…}` bodies.
enum Piece {
    Text(String),
    Interp(String),
}

fn pieces(ctx: &Ctx, key: &str, s: &str, pos: Pos) -> Result<Vec<Piece>> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('\\') {
            text.push_str(&rest[..i - 1]);
            text.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        text.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            return Err(ctx.err(pos, key, format!("`{s}`: `${{` without its closing `}}`")));
        };
        let body = &rest[i + 2..i + end];
        if body.contains("${") {
            return Err(ctx.err(
                pos,
                key,
                format!("`{s}`: nested interpolations are not supported"),
            ));
        }
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(Piece::Interp(body.trim().to_string()));
        rest = &rest[i + end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

fn resolve_str(ctx: &Ctx, key: &str, s: &str, pos: Pos, depth: usize) -> Result<Node> {
    let parts = pieces(ctx, key, s, pos)?;
    if let [Piece::Interp(name)] = parts.as_slice() {
        let mut v = lookup(ctx, key, name, s, pos, depth)?;
        v.pos = pos;
        return Ok(v);
    }
    let mut out = String::new();
    for part in &parts {
        match part {
            Piece::Text(t) => out.push_str(t),
            Piece::Interp(name) => {
                let v = lookup(ctx, key, name, s, pos, depth)?;
                if matches!(v.kind, Kind::Seq(_) | Kind::Map(_)) {
                    return Err(ctx.err(
                        pos,
                        key,
                        format!("`{s}`: `${{{name}}}` is {}, not text", v.type_name()),
                    ));
                }
                out.push_str(&describe(&v));
            }
        }
    }
    Ok(Node {
        pos,
        kind: Kind::Str(out),
    })
}

/// The value `${name}` stands for in setting `key`.
fn lookup(ctx: &Ctx, key: &str, name: &str, s: &str, pos: Pos, depth: usize) -> Result<Node> {
    if let Some((resolver, _)) = name.split_once(':') {
        let kind = match (resolver.trim(), key) {
            // pytti's default seed: a new one each run (zoetrope draws it).
            ("now", "seed") if s == "${now:%f}" => Kind::Null,
            // pytti's model cache folder: zoetrope keeps weights in weights/.
            ("user_cache", "models_parent_dir") => Kind::Str(String::new()),
            _ => {
                return Err(ctx.err(
                    pos,
                    key,
                    format!(
                        "`${{{name}}}`: the Hydra resolver `{resolver}` is not understood here; \
                         zoetrope reads `${{now:%f}}` as the seed and `${{user_cache:}}` as \
                         models_parent_dir, as pytti's defaults use them, and `${{setting}}` \
                         as another setting's value: write the value itself"
                    ),
                ))
            }
        };
        return Ok(Node { pos, kind });
    }
    let Some(target) = ctx.get(name.trim_start_matches('.')) else {
        return Err(ctx.err(
            pos,
            key,
            format!(
                "`${{{name}}}` names no setting{}; interpolations may only take another \
                 setting's value (a preset never runs code): write the value itself",
                suggest(name, pytti_names())
            ),
        ));
    };
    if depth >= MAX_DEPTH {
        return Err(ctx.err(
            pos,
            key,
            format!("`${{{name}}}`: the interpolations refer to each other in a circle"),
        ));
    }
    let key = target.key.clone();
    resolve(ctx, &key, &target.node, depth + 1)
}

/// Loose equality of a preset value with pytti's default: numbers by
/// value whether written as numbers or strings (`'0'` = `0`), strings
/// trimmed.
fn same_value(a: &Node, b: &Node) -> bool {
    let num = |n: &Node| match &n.kind {
        Kind::Int(i) => Some(*i as f64),
        Kind::Float(x) => Some(*x),
        Kind::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match (&a.kind, &b.kind) {
        (Kind::Str(x), Kind::Str(y)) => x
            .split_whitespace()
            .eq(y.split_whitespace().flat_map(str::split_whitespace)),
        (Kind::Seq(x), Kind::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Kind::Map(x), Kind::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, _, v1), (k2, _, v2))| k1 == k2 && same_value(v1, v2))
        }
        (Kind::Bool(x), Kind::Bool(y)) => x == y,
        (Kind::Null, Kind::Null) => true,
        _ => matches!((num(a), num(b)), (Some(x), Some(y)) if x == y),
    }
}

/// The settings handed to the scene reader, in pytti's order, then the
/// computed perceptors and the transition.
fn build(ctx: &mut Ctx) -> Result<Vec<(String, Pos, Node)>> {
    let defaults = defaults();
    let default_of = |key: &str| defaults.iter().find(|d| d.key == key).map(|d| &d.node);
    let mut out = Vec::new();
    let mut display_keys = Vec::new();
    let mut notes = Vec::new();
    let entries = std::mem::take(&mut ctx.merged);
    for e in &entries {
        let key = e.key.as_str();
        let at_default = default_of(key).is_some_and(|d| same_value(&e.node, d));
        if pytti::DISPLAY_AND_CACHE.contains(&key) {
            if e.from_file {
                display_keys.push(key.to_string());
            }
            continue;
        }
        refuse_other_modes(ctx, e, at_default)?;
        let unused = [pytti::THREE_D, pytti::VIDEO_SOURCE, pytti::NOT_COMPUTED];
        if is_perceptor_key(key) || unused.iter().any(|list| list.contains(&key)) {
            continue;
        }
        if let (Kind::Int(-1), "width" | "height") = (&e.node.kind, key) {
            let kind = side_from_init(ctx, &entries, e, &mut notes)?;
            let pos = e.node.pos;
            out.push((e.key.clone(), e.key_pos, Node { pos, kind }));
            continue;
        }
        if let Some(node) = value_for(ctx, e, &mut display_keys, &mut notes)? {
            out.push((e.key.clone(), e.key_pos, node));
        }
    }
    ctx.merged = entries;
    ctx.notes.extend(notes);
    if !display_keys.is_empty() {
        ctx.notes.push(format!(
            "pytti's {} accepted and not used: {}",
            display_keys.join(", "),
            pytti::DISPLAY_NOTE
        ));
    }
    let mmc_on = ctx
        .get("use_mmc")
        .is_some_and(|e| e.from_file && e.node.kind == Kind::Bool(true));
    if mmc_on && ctx.get("perceptors").is_some() {
        ctx.notes.push(
            "the preset sets zoetrope's `perceptors`, which it keeps: use_mmc and mmc_models \
             are ignored"
                .into(),
        );
    }
    out.extend(perceptor_settings(ctx)?);
    if ctx.get("transition").is_none() {
        let pytti = Node {
            pos: Pos::DEFAULT,
            kind: Kind::Str("pytti".into()),
        };
        out.push(("transition".into(), Pos::DEFAULT, pytti));
    }
    Ok(out)
}

/// 3D and Video Source presets, and their settings when not at pytti's
/// defaults, are refused by name; so are losses zoetrope does not compute.
fn refuse_other_modes(ctx: &Ctx, e: &Entry, at_default: bool) -> Result<()> {
    let key = e.key.as_str();
    if key == "animation_mode" {
        if let Kind::Str(s) = &e.node.kind {
            let mode = s.trim().to_lowercase();
            if mode == "3d" || mode == "video source" {
                return Err(ctx.err(
                    e.node.pos,
                    key,
                    format!(
                        "pytti's \"{}\" mode is not rendered by zoetrope, which renders \"off\" \
                         and \"2D\"; set animation_mode: 2D (and drop the {} settings)",
                        s.trim(),
                        if mode == "3d" { "3D" } else { "Video Source" }
                    ),
                ));
            }
        }
        return Ok(());
    }
    if at_default {
        return Ok(());
    }
    let what = if pytti::THREE_D.contains(&key) {
        "is a setting of pytti's 3D mode, which zoetrope does not render"
    } else if pytti::VIDEO_SOURCE.contains(&key) {
        "is a setting of pytti's Video Source mode, which zoetrope does not render"
    } else if pytti::NOT_COMPUTED.contains(&key) {
        "is a pytti loss zoetrope does not compute"
    } else {
        return Ok(());
    };
    Err(ctx.err(
        e.node.pos,
        key,
        format!(
            "{what}; remove it or set it back to pytti's default ({})",
            describe(
                &defaults()
                    .into_iter()
                    .find(|d| d.key == key)
                    .map(|d| d.node)
                    .unwrap_or(Node {
                        pos: Pos::DEFAULT,
                        kind: Kind::Null
                    })
            )
        ),
    ))
}

fn is_perceptor_key(key: &str) -> bool {
    key == "use_mmc" || key == "mmc_models" || CLIP_FLAGS.iter().any(|(f, _)| *f == key)
}

/// The value zoetrope's setting gets (`None`: leave it out).
fn value_for(
    ctx: &Ctx,
    e: &Entry,
    display: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Option<Node>> {
    let key = e.key.as_str();
    let pos = e.node.pos;
    let node = |kind| Some(Node { pos, kind });
    match (&e.node.kind, key) {
        (Kind::Null, _) => Ok(None),
        (Kind::Str(s), k) if s.trim().is_empty() && pytti::EMPTY_IS_NONE.contains(&k) => Ok(None),
        (Kind::Map(_), _) => Err(ctx.err(pos, key, "expected a single value, found a mapping")),
        (Kind::Bool(false), "animation_mode") => Ok(node(Kind::Str("off".into()))),
        (_, "seed") => seed(ctx, e, notes).map(|k| k.and_then(node)),
        (Kind::Int(i), "device") => {
            if !e.from_file {
                return Ok(None);
            }
            display.push("device (a GPU index)".into());
            let d = if *i == 0 {
                "auto".to_string()
            } else {
                format!("cuda:{i}")
            };
            Ok(node(Kind::Str(d)))
        }
        (_, "device") if !e.from_file => Ok(None),
        (kind, _) => Ok(node(kind.clone())),
    }
}

/// pytti's `-1` width or height: that side from the init image's aspect
/// ratio and the other side, as pytti's `load_init_image` computes it
/// (`int(height · w / h)`, truncated). The init image is read from the
/// preset's folder, as the scene reads it.
fn side_from_init(
    ctx: &Ctx,
    entries: &[Entry],
    e: &Entry,
    notes: &mut Vec<String>,
) -> Result<Kind> {
    let get = |key: &str| entries.iter().find(|x| x.key == key).map(|x| &x.node.kind);
    let (key, pos) = (e.key.as_str(), e.node.pos);
    let other_key = if key == "width" { "height" } else { "width" };
    let refuse = |why: &str| {
        ctx.err(
            pos,
            key,
            format!("pytti's -1 takes this side from the init image's aspect ratio, but {why}; give the size in pixels"),
        )
    };
    let init = match get("init_image") {
        Some(Kind::Str(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Err(refuse("the preset has no `init_image`")),
    };
    let other = match get(other_key) {
        Some(Kind::Int(n)) if *n > 0 => *n,
        _ => return Err(refuse(&format!("`{other_key}` is not a size in pixels"))),
    };
    let dir = std::path::Path::new(ctx.origin)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let path = dir.join(&init);
    let (w, h) = image::image_dimensions(&path).map_err(|err| {
        refuse(&format!(
            "the init image {} cannot be read ({err})",
            path.display()
        ))
    })?;
    let (along, across) = if key == "width" { (w, h) } else { (h, w) };
    let side = ((other * i128::from(along)) as f64 / f64::from(across)) as i128;
    if side < 1 {
        return Err(refuse(&format!("it gives {side} pixels")));
    }
    notes.push(format!(
        "{key}: -1 is {side} pixels ({other_key} {other} at the aspect ratio of {init}, {w}×{h})"
    ));
    Ok(Kind::Int(side))
}

/// pytti's seed: a whole number (or its text) handed to `torch.manual_seed`,
/// which maps a negative `s` to 2^64 − 1 + s; zoetrope's seeds are below
/// 2^63, so the top bit of such a value is dropped (with a note).
fn seed(ctx: &Ctx, e: &Entry, notes: &mut Vec<String>) -> Result<Option<Kind>> {
    let pos = e.node.pos;
    let n: i128 = match &e.node.kind {
        Kind::Int(i) => *i,
        Kind::Float(x) if x.fract() == 0.0 && x.abs() < 1e30 => *x as i128,
        Kind::Str(s) if s.trim().parse::<i128>().is_ok() => s.trim().parse().unwrap_or(0),
        _ => {
            return Err(ctx.err(
                pos,
                "seed",
                format!("expected a whole number, found {}", describe(&e.node)),
            ))
        }
    };
    if !(i64::MIN as i128..=u64::MAX as i128).contains(&n) {
        return Err(ctx.err(pos, "seed", format!("{n} is beyond torch's 64-bit seeds")));
    }
    if (0..=i64::MAX as i128).contains(&n) {
        return Ok(Some(Kind::Int(n)));
    }
    let torch = if n < 0 { u64::MAX as i128 + n } else { n };
    let ours = torch & i64::MAX as i128;
    notes.push(format!(
        "{}: seed {n} is outside zoetrope's seeds (0 to 2^63 − 1); using {ours}, torch's \
         reading of it ({torch}) without its top bit",
        super::at(ctx.origin, pos)
    ));
    Ok(Some(Kind::Int(ours)))
}

/// `perceptors` from pytti's CLIP flags (in pytti's order), or from
/// `mmc_models` when `use_mmc` is on. A preset that sets zoetrope's own
/// `perceptors` keeps it, edited by the flags it gives (as in a TOML scene).
fn perceptor_settings(ctx: &Ctx) -> Result<Vec<(String, Pos, Node)>> {
    if ctx.get("perceptors").is_some() {
        return Ok(CLIP_FLAGS
            .iter()
            .filter_map(|(f, _)| ctx.get(f).filter(|e| e.from_file))
            .map(|e| (e.key.clone(), e.key_pos, e.node.clone()))
            .collect());
    }
    let use_mmc = ctx.get("use_mmc").map(|e| &e.node);
    let (list, pos) = match use_mmc.map(|n| &n.kind) {
        Some(Kind::Bool(true)) => mmc_perceptors(ctx)?,
        Some(Kind::Bool(false)) | None => flag_perceptors(ctx)?,
        Some(_) => {
            let n = use_mmc.expect("matched Some");
            return Err(ctx.err(
                n.pos,
                "use_mmc",
                format!("expected true or false, found {}", describe(n)),
            ));
        }
    };
    let items = list
        .into_iter()
        .map(|(name, pos)| Node {
            pos,
            kind: Kind::Str(name.to_string()),
        })
        .collect();
    let node = Node {
        pos,
        kind: Kind::Seq(items),
    };
    Ok(vec![("perceptors".into(), pos, node)])
}

type Chosen = (Vec<(&'static str, Pos)>, Pos);

fn flag_perceptors(ctx: &Ctx) -> Result<Chosen> {
    let mut list = Vec::new();
    for (flag, model) in CLIP_FLAGS {
        let Some(e) = ctx.get(flag) else { continue };
        match e.node.kind {
            Kind::Bool(true) => list.push((model, e.node.pos)),
            Kind::Bool(false) | Kind::Null => {}
            _ => {
                return Err(ctx.err(
                    e.node.pos,
                    flag,
                    format!("expected true or false, found {}", describe(&e.node)),
                ))
            }
        }
    }
    let Some(&(_, pos)) = list.iter().find(|(_, p)| p.line > 0).or(list.first()) else {
        let at = ctx
            .get("ViTB32")
            .map(|e| e.node.pos)
            .unwrap_or(Pos::DEFAULT);
        return Err(ctx.err(
            at,
            "ViTB32",
            "every CLIP flag is false; pytti needs at least one perceptor: set e.g. ViTB32: true",
        ));
    };
    Ok((list, pos))
}

/// pytti's `mmc_models` entries (`{architecture: clip, publisher: openai,
/// id: ViT-B/32}`): each must name one of OpenAI's CLIP models.
fn mmc_perceptors(ctx: &Ctx) -> Result<Chosen> {
    let Some(e) = ctx.get("mmc_models").filter(|e| e.from_file) else {
        let at = ctx
            .get("use_mmc")
            .map(|e| e.node.pos)
            .unwrap_or(Pos::DEFAULT);
        return Err(ctx.err(
            at,
            "use_mmc",
            "use_mmc is on but the preset lists no mmc_models; add e.g. mmc_models: \
             [{architecture: clip, publisher: openai, id: ViT-B/32}]",
        ));
    };
    let Kind::Seq(items) = &e.node.kind else {
        return Err(ctx.err(e.node.pos, "mmc_models", "expected a list of models"));
    };
    let mut list: Vec<(&'static str, Pos)> = Vec::new();
    for item in items {
        let model = mmc_model(ctx, item)?;
        if !list.iter().any(|(m, _)| *m == model) {
            list.push((model, item.pos));
        }
    }
    let Some(&(_, pos)) = list.first() else {
        return Err(ctx.err(
            e.node.pos,
            "mmc_models",
            "the list is empty; name at least one model",
        ));
    };
    Ok((list, pos))
}

fn mmc_model(ctx: &Ctx, item: &Node) -> Result<&'static str> {
    let Kind::Map(fields) = &item.kind else {
        return Err(ctx.err(
            item.pos,
            "mmc_models",
            format!(
                "expected {{architecture, publisher, id}}, found {}",
                describe(item)
            ),
        ));
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, ..)| k == name)
            .map(|(_, _, v)| describe(v))
    };
    let id = field("id").unwrap_or_default();
    let arch = field("architecture").unwrap_or_else(|| "clip".into());
    let publisher = field("publisher").unwrap_or_else(|| "openai".into());
    let model = crate::catalog::canonical_perceptor(&id);
    match model {
        Some(m)
            if arch.eq_ignore_ascii_case("clip") && publisher.eq_ignore_ascii_case("openai") =>
        {
            Ok(m)
        }
        _ => Err(ctx.err(
            item.pos,
            "mmc_models",
            format!(
                "the model `{id}` (architecture {arch}, publisher {publisher}) is not one of \
                 OpenAI's CLIP models, the perceptors zoetrope has: {}",
                crate::catalog::PERCEPTORS.join(", ")
            ),
        )),
    }
}
