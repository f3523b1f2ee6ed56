//! What the compiler cannot check about the layout, checked on the parsed
//! sources (syn), not on lines:
//!
//! - **No import cycles**, in either crate: the graph whose nodes are modules
//!   and whose edges are every `use crate::…` / `use super::…` / `use self::…`
//!   (grouped trees included) and every inline `crate::…` / `super::…` path,
//!   each resolved to the module that *defines* the item (through `pub use`
//!   re-exports, so `super::Reason` re-exported by `tusd/mod.rs` from
//!   `tusd/decision.rs` is an edge to `tusd::decision`), has no cycle.
//! - **The core does no I/O**: no path in `crates/assetgate-core` names
//!   `std::fs`, `std::net`, `std::env`, `std::process` or `std::os` (its
//!   `Cargo.toml` already cannot name tokio, hyper, figment, redb or redis).
//! - **Layers**: nothing below the adapters (`http`, `daemon`, `cli`) imports
//!   them.
//!
//! `#[cfg(test)]` items and modules are not code the daemon runs: skipped.
//! `ASSETGATE_ARCH_GRAPH=1` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module: its path from the crate root (`["tusd", "rules"]`), its file.
#[derive(Default)]
struct Module {
    file: PathBuf,
    /// Child modules (declared here, in a file or inline).
    children: BTreeSet<String>,
    /// Items defined here (types, functions, traits, constants, macros).
    defined: BTreeSet<String>,
    /// `use` aliases: name → full path as written (`crate::a::B`).
    aliases: BTreeMap<String, Vec<String>>,
    /// Glob imports (`use x::*`), as written.
    globs: Vec<Vec<String>>,
    /// Every path that may name this crate's items: (segments, line).
    paths: Vec<(Vec<String>, usize)>,
}

struct Crate {
    name: &'static str,
    modules: BTreeMap<Vec<String>, Module>,
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let text = a.meta.to_token_stream_string();
            text.contains("test") && !text.contains("not (test") && !text.contains("not(test")
        }
    })
}

trait TokenText {
    fn to_token_stream_string(&self) -> String;
}

impl TokenText for syn::Meta {
    fn to_token_stream_string(&self) -> String {
        quote::ToTokens::to_token_stream(self).to_string()
    }
}

/// Collects the paths of a module's code (not of its nested test items).
struct Paths<'a> {
    out: &'a mut Vec<(Vec<String>, usize)>,
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p.segments.first().map_or(0, |s| s.ident.span().start().line);
        if !segs.is_empty() {
            self.out.push((segs, line));
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Nested modules are modules of their own.
    }

    fn visit_item_use(&mut self, _: &'ast syn::ItemUse) {
        // `use` trees are read as aliases (below), not as paths.
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
}

fn use_tree(tree: &syn::UseTree, prefix: &mut Vec<String>, m: &mut Module, line: usize) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_tree(&p.tree, prefix, m, line);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut full = prefix.clone();
            if name == "self" {
                let alias = prefix.last().cloned().unwrap_or_default();
                m.aliases.insert(alias, full.clone());
            } else {
                full.push(name.clone());
                m.aliases.insert(name, full.clone());
            }
            m.paths.push((full, line));
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            m.aliases.insert(r.rename.to_string(), full.clone());
            m.paths.push((full, line));
        }
        syn::UseTree::Glob(_) => {
            m.globs.push(prefix.clone());
            m.paths.push((prefix.clone(), line));
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_tree(t, prefix, m, line);
            }
        }
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    Some(match item {
        syn::Item::Const(i) => i.ident.to_string(),
        syn::Item::Enum(i) => i.ident.to_string(),
        syn::Item::Fn(i) => i.sig.ident.to_string(),
        syn::Item::Macro(i) => i.ident.as_ref()?.to_string(),
        syn::Item::Static(i) => i.ident.to_string(),
        syn::Item::Struct(i) => i.ident.to_string(),
        syn::Item::Trait(i) => i.ident.to_string(),
        syn::Item::Type(i) => i.ident.to_string(),
        syn::Item::Union(i) => i.ident.to_string(),
        _ => return None,
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Reads the module `path` from `items` (a file's or an inline module's),
/// `dir` being where its child module files live.
fn read_items(krate: &mut Crate, path: Vec<String>, file: &Path, dir: &Path, items: &[syn::Item]) {
    let mut m = Module {
        file: file.to_path_buf(),
        ..Module::default()
    };
    let mut children = Vec::new();
    for item in items {
        if is_test(item_attrs(item)) {
            continue;
        }
        match item {
            syn::Item::Mod(md) => {
                let name = md.ident.to_string();
                m.children.insert(name.clone());
                let mut child = path.clone();
                child.push(name.clone());
                match &md.content {
                    Some((_, inner)) => {
                        children.push((child, file.to_path_buf(), dir.join(&name), inner.clone()))
                    }
                    None => {
                        let (f, d) = if dir.join(format!("{name}.rs")).is_file() {
                            (dir.join(format!("{name}.rs")), dir.join(&name))
                        } else {
                            (dir.join(&name).join("mod.rs"), dir.join(&name))
                        };
                        let text =
                            std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                        let parsed =
                            syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                        children.push((child, f, d, parsed.items));
                    }
                }
            }
            syn::Item::Use(u) => {
                let line = u.use_token.span.start().line;
                use_tree(&u.tree, &mut Vec::new(), &mut m, line);
            }
            other => {
                if let Some(n) = item_name(other) {
                    m.defined.insert(n);
                }
                let mut v = Paths { out: &mut m.paths };
                v.visit_item(other);
            }
        }
    }
    krate.modules.insert(path, m);
    for (child, f, d, inner) in children {
        read_items(krate, child, &f, &d, &inner);
    }
}

fn read_crate(name: &'static str, lib: &Path) -> Crate {
    let mut krate = Crate {
        name,
        modules: BTreeMap::new(),
    };
    let text = std::fs::read_to_string(lib).unwrap();
    let parsed = syn::parse_file(&text).unwrap();
    read_items(&mut krate, Vec::new(), lib, lib.parent().unwrap(), &parsed.items);
    assert!(krate.modules.len() > 10, "{name}: found its modules");
    krate
}

/// Where a path leads: the module that defines what it names, or a module
/// itself (a path of modules only, which names nothing to depend on yet).
enum Target {
    Item(Vec<String>),
    Module,
}

impl Crate {
    /// What `path` (as written in module `at`) names, if it is this crate's.
    fn resolve(&self, at: &[String], path: &[String], depth: usize) -> Option<Target> {
        self.resolve_in(at, path, depth, false)
    }

    /// `strict`: through a glob import, where a name that is not found there
    /// is not there (instead of "the module reached").
    fn resolve_in(&self, at: &[String], path: &[String], depth: usize, strict: bool) -> Option<Target> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut cur, rest): (Vec<String>, &[String]) = match anchored(at, path) {
            Some(anchored) => anchored,
            None => {
                let first = path[0].as_str();
                let here = self.modules.get(at)?;
                if here.children.contains(first) {
                    (at.to_vec(), path)
                } else if let Some(full) = here.aliases.get(first) {
                    if full.first().is_some_and(|s| s == first) {
                        return None; // an external crate (`use serde;`)
                    }
                    let mut p = full.clone();
                    p.extend_from_slice(&path[1..]);
                    return self.resolve_in(at, &p, depth + 1, strict);
                } else {
                    return None;
                }
            }
        };
        for (i, seg) in rest.iter().enumerate() {
            let m = self.modules.get(&cur)?;
            if m.children.contains(seg) {
                cur.push(seg.clone());
                continue;
            }
            if m.defined.contains(seg) {
                return Some(Target::Item(cur));
            }
            if let Some(full) = m.aliases.get(seg) {
                let mut p = full.clone();
                p.extend_from_slice(&rest[i + 1..]);
                return self.resolve_in(&cur, &p, depth + 1, strict);
            }
            for g in &m.globs {
                let mut p = g.clone();
                p.extend_from_slice(&rest[i..]);
                if let Some(t) = self.resolve_in(&cur, &p, depth + 1, true) {
                    return Some(t);
                }
            }
            if strict {
                return None;
            }
            // Not found here (an enum variant, an associated item, a
            // macro): the module that was reached.
            return Some(Target::Item(cur));
        }
        Some(Target::Module)
    }

    /// Edges: module → module it takes an item from, with a witness line. A
    /// glob import is an edge to the module it empties.
    fn edges(&self) -> BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> {
        let mut out: BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> = BTreeMap::new();
        for (at, m) in &self.modules {
            let e = out.entry(at.clone()).or_default();
            let globs = m.globs.iter().filter_map(|g| {
                let mut p = g.clone();
                p.push(String::new());
                match self.resolve(at, g, 0)? {
                    Target::Module => {
                        p.pop();
                        let mut cur = Vec::new();
                        // The module a glob names, by descending its path.
                        let full = self.module_path(at, &p)?;
                        cur.extend(full);
                        Some((cur, g.clone(), 0))
                    }
                    Target::Item(_) => None,
                }
            });
            let items = m
                .paths
                .iter()
                .filter_map(|(p, line)| match self.resolve(at, p, 0)? {
                    Target::Item(t) => Some((t, p.clone(), *line)),
                    Target::Module => None,
                });
            for (t, p, line) in items.chain(globs.collect::<Vec<_>>()) {
                if &t != at {
                    e.entry(t)
                        .or_insert_with(|| format!("{}:{line}: {}", m.file.display(), p.join("::")));
                }
            }
        }
        out
    }

    /// The module a path of modules names, from `at`.
    fn module_path(&self, at: &[String], path: &[String]) -> Option<Vec<String>> {
        path.first()?;
        let (mut cur, rest) = anchored(at, path).unwrap_or_else(|| (at.to_vec(), path));
        for seg in rest {
            if !self.modules.get(&cur)?.children.contains(seg) {
                return None;
            }
            cur.push(seg.clone());
        }
        Some(cur)
    }
}

/// A path that starts at `crate`, `self` or `super`s, from `at`: the module
/// it starts in and the rest; `None` for a path that starts with a name.
fn anchored<'p>(at: &[String], path: &'p [String]) -> Option<(Vec<String>, &'p [String])> {
    match path.first()?.as_str() {
        "crate" => Some((Vec::new(), &path[1..])),
        "self" => Some((at.to_vec(), &path[1..])),
        "super" => {
            let mut cur = at.to_vec();
            let mut i = 0;
            while path.get(i).is_some_and(|s| s == "super") {
                cur.pop();
                i += 1;
            }
            Some((cur, &path[i..]))
        }
        _ => None,
    }
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>) -> Vec<Vec<Vec<String>>> {
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on: BTreeSet<Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    impl T<'_> {
        fn visit(&mut self, v: &Vec<String>) {
            self.index.insert(v.clone(), self.next);
            self.low.insert(v.clone(), self.next);
            self.next += 1;
            self.stack.push(v.clone());
            self.on.insert(v.clone());
            let targets: Vec<Vec<String>> = self
                .edges
                .get(v)
                .map(|e| e.keys().cloned().collect())
                .unwrap_or_default();
            for w in targets {
                if !self.index.contains_key(&w) {
                    self.visit(&w);
                    let l = self.low[v].min(self.low[&w]);
                    self.low.insert(v.clone(), l);
                } else if self.on.contains(&w) {
                    let l = self.low[v].min(self.index[&w]);
                    self.low.insert(v.clone(), l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on.remove(&w);
                    let done = &w == v;
                    comp.push(w);
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn crates() -> Vec<Crate> {
    vec![
        read_crate("assetgate", &root().join("src/lib.rs")),
        read_crate("assetgate-core", &root().join("crates/assetgate-core/src/lib.rs")),
    ]
}

/// A cycle, as the edges that close it, with a witness each.
fn explain(edges: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>, comp: &[Vec<String>]) -> String {
    let inside: BTreeSet<&Vec<String>> = comp.iter().collect();
    let mut out = format!(
        "{} modules: {}\n",
        comp.len(),
        comp.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
    );
    for from in comp {
        for (to, witness) in &edges[from] {
            if inside.contains(to) {
                out.push_str(&format!("  {} -> {}   ({witness})\n", name(from), name(to)));
            }
        }
    }
    out
}

#[test]
fn no_import_cycles_in_either_crate() {
    let mut found = Vec::new();
    for krate in crates() {
        let edges = krate.edges();
        if std::env::var_os("ASSETGATE_ARCH_GRAPH").is_some() {
            for (from, to) in &edges {
                for (t, w) in to {
                    println!("{}: {} -> {}   ({w})", krate.name, name(from), name(t));
                }
            }
        }
        let n: usize = edges.values().map(BTreeMap::len).sum();
        assert!(n > 50, "{}: found the imports ({n} edges)", krate.name);
        for comp in cycles(&edges) {
            found.push(format!("{}: {}", krate.name, explain(&edges, &comp)));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_core_does_no_io() {
    let core = read_crate("assetgate-core", &root().join("crates/assetgate-core/src/lib.rs"));
    let forbidden = ["fs", "net", "env", "process", "os"];
    let mut found = Vec::new();
    for m in core.modules.values() {
        for (p, line) in &m.paths {
            // `std::fs::…`, and `use std::{fs, …}` (read as `std::fs`).
            if p.len() >= 2 && (p[0] == "std" || p[0] == "core") && forbidden.contains(&p[1].as_str()) {
                found.push(format!("{}:{line}: {}", m.file.display(), p.join("::")));
            }
        }
        for full in m.aliases.values().chain(m.globs.iter()) {
            if full.len() >= 2 && full[0] == "std" && forbidden.contains(&full[1].as_str()) {
                found.push(format!("{}: use {}", m.file.display(), full.join("::")));
            }
        }
    }
    found.sort();
    found.dedup();
    assert!(found.is_empty(), "I/O in the core:\n{}", found.join("\n"));
}

#[test]
fn nothing_below_the_adapters_imports_them() {
    let daemon = read_crate("assetgate", &root().join("src/lib.rs"));
    let adapters = ["http", "daemon", "cli"];
    let is_adapter = |m: &[String]| m.first().is_some_and(|f| adapters.contains(&f.as_str()));
    let mut found = Vec::new();
    for (from, to) in daemon.edges() {
        if from.is_empty() || is_adapter(&from) {
            continue;
        }
        for (t, w) in to {
            if is_adapter(&t) {
                found.push(format!("{} -> {}   ({w})", name(&from), name(&t)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a lower layer imports an adapter:\n{}",
        found.join("\n")
    );
}
