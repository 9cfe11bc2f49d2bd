//! YAML text -> a tree of located [`Node`]s, built from the event stream of serde-saphyr's
//! parser (`granit_parser`), so that every value keeps its line and column.
//!
//! Invariants: scalars stay text exactly as written (YAML 1.2: `on`, `yes`, `1.10` are not
//! coerced; the reader decides per field what a scalar means); duplicate keys, syntax errors,
//! a second document and alias bombs come back as located [`Problem`]s, never as panics.
//! Anchors and aliases resolve by copying; `<<` merge keys merge mappings under explicit keys.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Options, Parser, ScalarStyle, Span};

/// Most nodes a document may hold once aliases are expanded (guards against "billion laughs").
const MAX_NODES: usize = 200_000;
/// Deepest nesting once aliases are expanded (the parser bounds it without aliases; aliases
/// inside anchored collections could stack up, and the tree is walked recursively).
const MAX_DEPTH: usize = 300;

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Pos {
    fn of(marker: &Marker) -> Pos {
        Pos { line: marker.line().max(1), column: marker.col() + 1 }
    }
}

/// Where a scalar's text came from, precise enough to locate a byte offset inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    /// Where the node starts.
    pub pos: Pos,
    /// How offsets inside the text map back to the file.
    kind: OriginKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum OriginKind {
    /// A single-line scalar: offsets count from `pos`, after `quote` opening characters.
    Inline { quote: usize },
    /// A literal block (`|`): text line `k` is file line `first_line + k`, after `indent`.
    Block { first_line: usize, indent: usize },
    /// Anything else (folded or multi-line scalars): everything maps to `pos`.
    #[default]
    Opaque,
}

impl Origin {
    /// An origin for something that is not a scalar (a key's position, a mapping).
    pub fn at(pos: Pos) -> Origin {
        Origin { pos, kind: OriginKind::Opaque }
    }

    /// The file position of byte `offset` of `text` (the text this origin describes).
    pub fn locate(&self, text: &str, offset: usize) -> Pos {
        let offset = floor_char_boundary(text, offset);
        let before = &text[..offset];
        match self.kind {
            OriginKind::Inline { quote } if !before.contains('\n') => Pos {
                line: self.pos.line,
                column: self.pos.column + quote + before.chars().count(),
            },
            OriginKind::Block { first_line, indent } => {
                let line = before.matches('\n').count();
                let column = before.rsplit('\n').next().unwrap_or("").chars().count();
                Pos { line: first_line + line, column: indent + column + 1 }
            }
            _ => self.pos,
        }
    }

    /// The origin of line `index` of this scalar's text split on `\n`.
    pub fn line(&self, index: usize) -> Origin {
        match self.kind {
            OriginKind::Block { first_line, indent } => Origin {
                pos: Pos { line: first_line + index, column: indent + 1 },
                kind: OriginKind::Block { first_line: first_line + index, indent },
            },
            OriginKind::Inline { .. } if index == 0 => *self,
            _ => Origin::at(self.pos),
        }
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A located YAML node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node is (for scalars, enough to locate offsets inside them).
    pub origin: Origin,
    /// What it is.
    pub kind: Kind,
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Text as written. `plain` is false for quoted and block scalars and for `!!str`.
    Scalar {
        /// The scalar's value after YAML escape processing.
        text: String,
        /// Written without quotes (so `null`, `~` and empty mean null).
        plain: bool,
    },
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, in file order; keys are unique (duplicates were reported and dropped).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Where the node starts.
    pub fn pos(&self) -> Pos {
        self.origin.pos
    }

    /// YAML null: a plain `null`, `Null`, `NULL`, `~` or nothing.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar's text, if this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Words for error messages: "a mapping", "a list", "null" or "text 'x'".
    pub fn describe(&self) -> String {
        match &self.kind {
            _ if self.is_null() => "nothing (null)".into(),
            Kind::Scalar { text, .. } => {
                let short: String = text.chars().take(40).collect();
                let more = if short.len() < text.len() { "…" } else { "" };
                format!("'{short}{more}'")
            }
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }
}

/// A problem found while reading YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// A collection being built.
struct Frame {
    origin: Origin,
    anchor: usize,
    /// Nodes in it so far (itself included), and the depth of its deepest child.
    size: usize,
    depth: usize,
    body: Body,
}

enum Body {
    Seq(Vec<Node>),
    Map { entries: Vec<(Node, Node)>, key: Option<Node> },
}

/// A finished node with its size (in nodes) and depth.
struct Sized {
    node: Node,
    size: usize,
    depth: usize,
}

/// Builds the tree from events.
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize, usize)>,
    root: Option<Node>,
    nodes: usize,
    problems: Vec<Problem>,
}

/// Parses one YAML document into a located tree. Returns `None` for the tree when the text
/// is not valid YAML (the problem says where) or holds no document.
pub fn parse(text: &str) -> (Option<Node>, Vec<Problem>) {
    let mut options = Options::default();
    options.set_emit_comments(false);
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
        problems: Vec::new(),
    };
    let mut documents = 0;
    for next in parser.by_ref() {
        let (event, span) = match next {
            Ok(e) => e,
            Err(e) => {
                let info = e.info();
                let info = if info.is_empty() { "invalid YAML".to_string() } else { info };
                b.problems.push(Problem {
                    pos: Pos::of(e.marker()),
                    message: format!("YAML syntax error: {info}"),
                });
                return (None, b.problems);
            }
        };
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    b.problems.push(Problem {
                        pos: Pos::of(&span.start),
                        message: "a workflow file holds one YAML document; found a second one \
                                  (remove the '---' separator or split the file)"
                            .into(),
                    });
                    return (None, b.problems);
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                let forced_text = tag.as_ref().is_some_and(|t| t.is_yaml_core_schema_tag("str"));
                let plain = style == ScalarStyle::Plain && !forced_text;
                let origin = Builder::scalar_origin(&span, style, &value);
                let node = Node { origin, kind: Kind::Scalar { text: value.into_owned(), plain } };
                if !b.complete(Sized { node, size: 1, depth: 1 }, 1, anchor) {
                    return (None, b.problems);
                }
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                let body = if matches!(event, Event::SequenceStart(..)) {
                    Body::Seq(Vec::new())
                } else {
                    Body::Map { entries: Vec::new(), key: None }
                };
                let origin = Origin::at(Pos::of(&span.start));
                b.stack.push(Frame { origin, anchor, size: 1, depth: 0, body });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = b.stack.pop() else { continue };
                let kind = match frame.body {
                    Body::Seq(items) => Kind::Seq(items),
                    Body::Map { entries, .. } => Kind::Map(b.finish_map(entries)),
                };
                let node = Node { origin: frame.origin, kind };
                let sized = Sized { node, size: frame.size, depth: frame.depth + 1 };
                if !b.complete(sized, 1, frame.anchor) {
                    return (None, b.problems);
                }
            }
            Event::Alias(id) => {
                let Some((node, size, depth)) = b.anchors.get(&id).cloned() else {
                    b.problems.push(Problem {
                        pos: Pos::of(&span.start),
                        message: "alias refers to an unknown anchor".into(),
                    });
                    return (None, b.problems);
                };
                if !b.complete(Sized { node, size, depth }, size, 0) {
                    return (None, b.problems);
                }
            }
            _ => {}
        }
    }
    (b.root, b.problems)
}

impl Builder {
    /// Locates a scalar so offsets inside it can be mapped back to the file.
    fn scalar_origin(span: &Span, style: ScalarStyle, value: &str) -> Origin {
        let pos = Pos::of(&span.start);
        let kind = match style {
            ScalarStyle::Plain if !value.contains('\n') => OriginKind::Inline { quote: 0 },
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted if !value.contains('\n') => {
                OriginKind::Inline { quote: 1 }
            }
            ScalarStyle::Literal => Self::block_layout(span, value),
            _ => OriginKind::Opaque,
        };
        Origin { pos, kind }
    }

    /// The first line and indentation of a literal block scalar. The parser's span starts at
    /// the first non-blank content line, at the block's indentation.
    fn block_layout(span: &Span, value: &str) -> OriginKind {
        let leading_blank = value.len() - value.trim_start_matches('\n').len();
        OriginKind::Block {
            first_line: span.start.line().saturating_sub(leading_blank).max(1),
            indent: span.start.col(),
        }
    }

    /// Attaches a finished node to its parent (or makes it the root); `added` is how many
    /// new nodes it brings (an alias copies its whole anchor). False when a budget is
    /// exhausted.
    fn complete(&mut self, sized: Sized, added: usize, anchor: usize) -> bool {
        let Sized { node, size, depth } = sized;
        self.nodes = self.nodes.saturating_add(added);
        let message = if self.nodes > MAX_NODES {
            format!(
                "the document is too large: more than {MAX_NODES} values once aliases are expanded"
            )
        } else if depth + self.stack.len() > MAX_DEPTH {
            format!(
                "the document nests too deeply: more than {MAX_DEPTH} levels once aliases are expanded"
            )
        } else {
            String::new()
        };
        if !message.is_empty() {
            self.problems.push(Problem { pos: node.pos(), message });
            return false;
        }
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size, depth));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(frame) => {
                frame.size = frame.size.saturating_add(size);
                frame.depth = frame.depth.max(depth);
                match &mut frame.body {
                    Body::Seq(items) => items.push(node),
                    Body::Map { entries, key } => match key.take() {
                        None => *key = Some(node),
                        Some(k) => entries.push((k, node)),
                    },
                }
            }
        }
        true
    }

    /// Reports duplicate and non-text keys, and applies `<<` merge keys.
    fn finish_map(&mut self, entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
        let mut out: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.scalar().map(str::to_owned) else {
                self.problems.push(Problem {
                    pos: key.pos(),
                    message: format!("a key must be text, found {}", key.describe()),
                });
                continue;
            };
            if name == "<<" && matches!(key.kind, Kind::Scalar { plain: true, .. }) {
                match value.kind {
                    Kind::Map(m) => merged.extend(m),
                    Kind::Seq(items) => {
                        for item in items {
                            match item.kind {
                                Kind::Map(m) => merged.extend(m),
                                _ => self.problems.push(Problem {
                                    pos: item.pos(),
                                    message: "expected a mapping to merge with '<<'".into(),
                                }),
                            }
                        }
                    }
                    _ => self.problems.push(Problem {
                        pos: value.pos(),
                        message: "expected a mapping (or a list of mappings) to merge with '<<'"
                            .into(),
                    }),
                }
                continue;
            }
            if let Some(first) = seen.get(&name) {
                self.problems.push(Problem {
                    pos: key.pos(),
                    message: format!("duplicate key '{name}' (first at line {})", first.line),
                });
                continue;
            }
            seen.insert(name, key.pos());
            out.push((key, value));
        }
        // Merged entries never override explicit keys; among merged mappings the first wins.
        for (key, value) in merged {
            if let Some(name) = key.scalar()
                && !seen.contains_key(name)
            {
                seen.insert(name.to_owned(), key.pos());
                out.push((key, value));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per scalar: `path @line:col = "text"`.
    fn show(node: &Node, path: &str, out: &mut String) {
        let p = node.pos();
        match &node.kind {
            Kind::Scalar { text, plain } => {
                let q = if *plain { "" } else { " (quoted)" };
                out.push_str(&format!("{path} @{}:{} = {text:?}{q}\n", p.line, p.column));
            }
            Kind::Seq(items) => {
                out.push_str(&format!("{path} @{}:{} list\n", p.line, p.column));
                for (i, item) in items.iter().enumerate() {
                    show(item, &format!("{path}[{i}]"), out);
                }
            }
            Kind::Map(entries) => {
                out.push_str(&format!("{path} @{}:{} map\n", p.line, p.column));
                for (k, v) in entries {
                    let kp = k.pos();
                    let name = k.scalar().unwrap_or("?");
                    out.push_str(&format!("{path}.{name} key @{}:{}\n", kp.line, kp.column));
                    show(v, &format!("{path}.{name}"), out);
                }
            }
        }
    }

    fn check(text: &str) -> String {
        let (root, problems) = parse(text);
        let mut out = String::new();
        if let Some(root) = root {
            show(&root, "$", &mut out);
        }
        for p in problems {
            out.push_str(&format!("{}:{}: {}\n", p.pos.line, p.pos.column, p.message));
        }
        out
    }

    #[test]
    fn scalars_stay_text_with_positions() {
        insta::assert_snapshot!(check("a: on\nb: 1.10\n'c': \"yes\"\nd:\ne: [x, ~]\n"), @r#"
        $ @1:1 map
        $.a key @1:1
        $.a @1:4 = "on"
        $.b key @2:1
        $.b @2:4 = "1.10"
        $.c key @3:1
        $.c @3:6 = "yes" (quoted)
        $.d key @4:1
        $.d @4:2 = "~"
        $.e key @5:1
        $.e @5:4 list
        $.e[0] @5:5 = "x"
        $.e[1] @5:8 = "~"
        "#);
    }

    #[test]
    fn duplicates_and_merges() {
        insta::assert_snapshot!(check("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n  y: 4\n"), @r#"
        $ @1:1 map
        $.base key @1:1
        $.base @1:10 map
        $.base.x key @1:11
        $.base.x @1:14 = "1"
        $.base.y key @1:17
        $.base.y @1:20 = "2"
        $.m key @2:1
        $.m @3:3 map
        $.m.y key @4:3
        $.m.y @4:6 = "3"
        $.m.x key @1:11
        $.m.x @1:14 = "1"
        5:3: duplicate key 'y' (first at line 4)
        "#);
    }

    #[test]
    fn syntax_errors_are_located() {
        let out = check("a: [1, 2\nb: c\n");
        assert!(out.starts_with("3:1: YAML syntax error:") || out.contains("YAML syntax error"));
        let out = check("a: 1\n---\nb: 2\n");
        assert!(out.contains("2:1: a workflow file holds one YAML document"), "{out}");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let out = check(&text);
        assert!(out.contains("the document is too large"), "{out}");
    }

    #[test]
    fn alias_nesting_is_bounded() {
        let mut text = format!("a0: &a0 {}x{}\n", "[".repeat(100), "]".repeat(100));
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} {}*a{p}{}\n", "[".repeat(100), "]".repeat(100)));
        }
        let out = check(&text);
        assert!(out.contains("nests too deeply"), "{out}");
    }

    #[test]
    fn offsets_inside_scalars() {
        let text = "a: x ${{ y }}\nb: 'q ${{ z }}'\nc: |\n  one\n    two ${{ w }}\nd: |2-\n\n   x ${{ v }}\n";
        let (root, _) = parse(text);
        let Some(Node { kind: Kind::Map(entries), .. }) = root else { panic!("no map") };
        let at = |i: usize, needle: &str| {
            let v = &entries[i].1;
            let t = v.scalar().unwrap_or_default();
            let off = t.find(needle).unwrap_or(0);
            let p = v.origin.locate(t, off);
            (p.line, p.column)
        };
        assert_eq!(at(0, "${{"), (1, 6));
        assert_eq!(at(1, "${{"), (2, 7));
        assert_eq!(at(2, "${{"), (5, 9));
        assert_eq!(at(2, "one"), (4, 3));
        assert_eq!(at(3, "${{"), (8, 6));
    }
}
