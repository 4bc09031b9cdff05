//! The source scan: every fn of a file, parsed with `syn`, and what its body
//! calls, sends (DynamoDB operations and transaction actions) and matches
//! (route keys).

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, Item, LitStr, Member, Token};

/// A DynamoDB operation (or transaction action) a fn sends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Need {
    /// The operation in IAM spelling (`Query`, `PutItem`, ...).
    pub action: String,
    /// On a secondary index rather than the table.
    pub on_index: bool,
}

impl Need {
    /// `dynamodb:<Action>`, or `None` where the operation's actions depend on
    /// its arguments (PartiQL), which this scan cannot tell.
    pub fn iam_action(&self) -> Option<String> {
        match self.action.as_str() {
            "ExecuteStatement" | "BatchExecuteStatement" | "ExecuteTransaction" => None,
            other => Some(format!("dynamodb:{other}")),
        }
    }
}

/// aws-sdk-dynamodb client operations. Transactions need no permission of
/// their own: the actions inside them do (see `BUILDERS`).
const OPERATIONS: &[&str] = &[
    "batch_execute_statement",
    "batch_get_item",
    "batch_write_item",
    "create_backup",
    "create_global_table",
    "create_table",
    "delete_backup",
    "delete_item",
    "delete_resource_policy",
    "delete_table",
    "describe_backup",
    "describe_continuous_backups",
    "describe_contributor_insights",
    "describe_endpoints",
    "describe_export",
    "describe_global_table",
    "describe_global_table_settings",
    "describe_import",
    "describe_kinesis_streaming_destination",
    "describe_limits",
    "describe_table",
    "describe_table_replica_auto_scaling",
    "describe_time_to_live",
    "disable_kinesis_streaming_destination",
    "enable_kinesis_streaming_destination",
    "execute_statement",
    "execute_transaction",
    "export_table_to_point_in_time",
    "get_item",
    "get_resource_policy",
    "import_table",
    "list_backups",
    "list_contributor_insights",
    "list_exports",
    "list_global_tables",
    "list_imports",
    "list_tables",
    "list_tags_of_resource",
    "put_item",
    "put_resource_policy",
    "query",
    "restore_table_from_backup",
    "restore_table_to_point_in_time",
    "scan",
    "tag_resource",
    "transact_get_items",
    "transact_write_items",
    "untag_resource",
    "update_continuous_backups",
    "update_contributor_insights",
    "update_global_table",
    "update_global_table_settings",
    "update_item",
    "update_kinesis_streaming_destination",
    "update_table",
    "update_table_replica_auto_scaling",
    "update_time_to_live",
];

/// Transaction action builders (`aws_sdk_dynamodb::types`) and the
/// permission each needs.
const BUILDERS: &[(&str, &str)] = &[
    ("Put", "PutItem"),
    ("Update", "UpdateItem"),
    ("Delete", "DeleteItem"),
    ("ConditionCheck", "ConditionCheckItem"),
    ("Get", "GetItem"),
];

fn pascal(op: &str) -> String {
    op.split('_')
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// One fn of the source: its name, the names it calls or refers to by
/// path, and the DynamoDB requests it makes itself.
#[derive(Clone, Debug, Default)]
pub struct FnFacts {
    pub file: String,
    pub name: String,
    pub calls: BTreeSet<String>,
    pub needs: BTreeSet<Need>,
    /// `"METHOD /path"` string literals (route keys a handler matches).
    pub route_keys: BTreeSet<String>,
}

fn is_route_key(s: &str) -> bool {
    let Some((method, path)) = s.split_once(' ') else {
        return false;
    };
    matches!(
        method,
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" | "ANY"
    ) && path.starts_with('/')
        && !path.contains(char::is_whitespace)
}

/// `#[cfg(test)]`: unit-test modules and helpers are not deployed code.
fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|arg| arg == "test")
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn impl_item_attrs(item: &syn::ImplItem) -> &[Attribute] {
    match item {
        syn::ImplItem::Const(i) => &i.attrs,
        syn::ImplItem::Fn(i) => &i.attrs,
        syn::ImplItem::Type(i) => &i.attrs,
        syn::ImplItem::Macro(i) => &i.attrs,
        _ => &[],
    }
}

fn trait_item_attrs(item: &syn::TraitItem) -> &[Attribute] {
    match item {
        syn::TraitItem::Const(i) => &i.attrs,
        syn::TraitItem::Fn(i) => &i.attrs,
        syn::TraitItem::Type(i) => &i.attrs,
        syn::TraitItem::Macro(i) => &i.attrs,
        _ => &[],
    }
}

/// Drops every `#[cfg(test)]` item, in modules, impls and traits too, so
/// the scans below see deployed code only.
fn strip_tests(items: &mut Vec<Item>) {
    items.retain(|item| !is_cfg_test(item_attrs(item)));
    for item in items {
        match item {
            Item::Mod(m) => {
                if let Some((_, inner)) = &mut m.content {
                    strip_tests(inner);
                }
            }
            Item::Impl(i) => i.items.retain(|it| !is_cfg_test(impl_item_attrs(it))),
            Item::Trait(t) => t.items.retain(|it| !is_cfg_test(trait_item_attrs(it))),
            _ => {}
        }
    }
}

/// `client`, `x.client`, `client()` or `x.client()`: the DynamoDB client.
fn is_client(receiver: &Expr) -> bool {
    let named_client = |path: &syn::Path| path.segments.last().is_some_and(|s| s.ident == "client");
    match receiver {
        Expr::Path(p) => named_client(&p.path),
        Expr::Field(f) => matches!(&f.member, Member::Named(n) if n == "client"),
        Expr::MethodCall(m) => m.method == "client" && m.args.is_empty(),
        Expr::Call(c) => {
            c.args.is_empty() && matches!(&*c.func, Expr::Path(p) if named_client(&p.path))
        }
        _ => false,
    }
}

/// What one body (or a whole file) calls, sends and matches. Nested items
/// are part of it; `#[cfg(test)]` items are not.
#[derive(Default)]
struct BodyScan {
    calls: BTreeSet<String>,
    needs: BTreeSet<Need>,
    route_keys: BTreeSet<String>,
    names_index: bool,
}

impl BodyScan {
    fn of_block(block: &syn::Block) -> Self {
        let mut scan = Self::default();
        scan.visit_block(block);
        scan
    }

    fn into_facts(mut self, file: &str, name: &str) -> FnFacts {
        // A Query or Scan in a fn that names an index may target the index
        // (and, built conditionally, the table): both are needed.
        if self.names_index {
            let on_index: Vec<Need> = self
                .needs
                .iter()
                .filter(|n| n.action == "Query" || n.action == "Scan")
                .map(|n| Need {
                    action: n.action.clone(),
                    on_index: true,
                })
                .collect();
            self.needs.extend(on_index);
        }
        FnFacts {
            file: file.to_string(),
            name: name.to_string(),
            calls: self.calls,
            needs: self.needs,
            route_keys: self.route_keys,
        }
    }

    fn string(&mut self, text: &str) {
        if is_route_key(text) {
            self.route_keys.insert(text.to_string());
        }
    }

    /// `.method(...)`, on the DynamoDB client or not.
    fn method_call(&mut self, method: &str, on_client: bool) {
        if on_client && OPERATIONS.contains(&method) {
            if !method.starts_with("transact_") {
                self.needs.insert(Need {
                    action: pascal(method),
                    on_index: false,
                });
            }
        } else if method == "index_name" || method == "set_index_name" {
            self.names_index = true;
        }
        self.calls.insert(method.to_string());
    }

    /// `Put::builder` and the like: a transaction action.
    fn path_pair(&mut self, ty: &str, name: &str) {
        if name == "builder" {
            if let Some((_, action)) = BUILDERS.iter().find(|(t, _)| *t == ty) {
                self.needs.insert(Need {
                    action: action.to_string(),
                    on_index: false,
                });
            }
        }
    }

    /// A macro body that is not a list of expressions (`json!` objects,
    /// `matches!` patterns, `tracing` fields, `macro_rules!`): the same
    /// facts, read from its tokens.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let t: Vec<TokenTree> = tokens.into_iter().collect();
        let ident = |i: usize| match t.get(i) {
            Some(TokenTree::Ident(id)) => Some(id.to_string()),
            _ => None,
        };
        let punct =
            |i: usize, c: char| matches!(t.get(i), Some(TokenTree::Punct(p)) if p.as_char() == c);
        let parens = |i: usize| matches!(t.get(i), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
        let no_args = |i: usize| matches!(t.get(i), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis && g.stream().is_empty());
        for (k, tree) in t.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Literal(_) => {
                    if let Ok(text) = syn::parse2::<LitStr>(tree.clone().into()) {
                        self.string(&text.value());
                    }
                }
                TokenTree::Punct(_) => {}
                TokenTree::Ident(word) => {
                    let word = word.to_string();
                    let path_next = punct(k + 1, ':') && punct(k + 2, ':');
                    let by_path = k >= 2 && punct(k - 1, ':') && punct(k - 2, ':');
                    if parens(k + 1) || path_next || by_path {
                        self.calls.insert(word.clone());
                    }
                    if by_path && k >= 3 {
                        if let Some(ty) = ident(k - 3) {
                            self.path_pair(&ty, &word);
                        }
                    }
                    if parens(k + 1) && k >= 2 && punct(k - 1, '.') {
                        // `client.op(` or `client().op(`
                        let on_client = ident(k - 2).as_deref() == Some("client")
                            || (k >= 3
                                && no_args(k - 2)
                                && ident(k - 3).as_deref() == Some("client"));
                        self.method_call(&word, on_client);
                    }
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for BodyScan {
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let Expr::Path(p) = &*call.func {
            if let Some(last) = p.path.segments.last() {
                self.calls.insert(last.ident.to_string());
            }
        }
        visit::visit_expr_call(self, call);
    }

    fn visit_pat_tuple_struct(&mut self, pat: &'ast syn::PatTupleStruct) {
        if let Some(last) = pat.path.segments.last() {
            self.calls.insert(last.ident.to_string());
        }
        visit::visit_pat_tuple_struct(self, pat);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.method_call(&call.method.to_string(), is_client(&call.receiver));
        visit::visit_expr_method_call(self, call);
    }

    /// `a::b::c` refers to each of its names; `Put::builder` builds a
    /// transaction action.
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if names.len() > 1 || path.leading_colon.is_some() {
            self.calls.extend(names.iter().cloned());
        }
        for pair in names.windows(2) {
            self.path_pair(&pair[0], &pair[1]);
        }
        visit::visit_path(self, path);
    }

    fn visit_use_path(&mut self, path: &'ast syn::UsePath) {
        self.calls.insert(path.ident.to_string());
        if let syn::UseTree::Name(name) = &*path.tree {
            self.calls.insert(name.ident.to_string());
        }
        visit::visit_use_path(self, path);
    }

    fn visit_lit_str(&mut self, lit: &'ast LitStr) {
        self.string(&lit.value());
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        match mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            Ok(args) => args.iter().for_each(|arg| self.visit_expr(arg)),
            Err(_) => self.scan_tokens(mac.tokens.clone()),
        }
    }
}

/// Every fn of a file, in source order (a nested fn after its parent).
struct FnScan<'f> {
    file: &'f str,
    fns: Vec<FnFacts>,
}

impl FnScan<'_> {
    fn add(&mut self, sig: &syn::Signature, body: Option<&syn::Block>) {
        let scan = body.map(BodyScan::of_block).unwrap_or_default();
        let name = sig.ident.to_string();
        self.fns.push(scan.into_facts(self.file, &name));
    }

    /// fns in a macro body that is no list of expressions (`macro_rules!`
    /// templates): `fn name ... { body }` read from the tokens.
    fn fns_in_tokens(&mut self, tokens: TokenStream) {
        let t: Vec<TokenTree> = tokens.into_iter().collect();
        for (k, tree) in t.iter().enumerate() {
            match tree {
                TokenTree::Ident(word) if word == "fn" => {
                    let Some(TokenTree::Ident(name)) = t.get(k + 1) else {
                        continue; // `fn(..)` pointer type
                    };
                    // The body: the first `{...}` after the name; a `;`
                    // first means a declaration without one.
                    let body = t[k + 2..]
                        .iter()
                        .find_map(|x| match x {
                            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                                Some(Some(g))
                            }
                            TokenTree::Punct(p) if p.as_char() == ';' => Some(None),
                            _ => None,
                        })
                        .flatten();
                    let mut scan = BodyScan::default();
                    if let Some(group) = body {
                        scan.scan_tokens(group.stream());
                    }
                    self.fns.push(scan.into_facts(self.file, &name.to_string()));
                }
                TokenTree::Group(group) => self.fns_in_tokens(group.stream()),
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for FnScan<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.add(&f.sig, Some(&f.block));
        visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.add(&f.sig, Some(&f.block));
        visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        self.add(&f.sig, f.default.as_ref());
        visit::visit_trait_item_fn(self, f);
    }

    fn visit_foreign_item_fn(&mut self, f: &'ast syn::ForeignItemFn) {
        self.add(&f.sig, None);
        visit::visit_foreign_item_fn(self, f);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let exprs = Punctuated::<Expr, Token![,]>::parse_terminated;
        if mac.parse_body_with(exprs).is_err() {
            self.fns_in_tokens(mac.tokens.clone());
        }
    }
}

/// Every fn of one file (nested fns are part of their parent too).
pub fn analyse(file: &str, text: &str) -> Vec<FnFacts> {
    let mut ast = syn::parse_file(text).unwrap_or_else(|e| panic!("{file}: {e}"));
    strip_tests(&mut ast.items);
    let mut scan = FnScan {
        file,
        fns: Vec::new(),
    };
    scan.visit_file(&ast);
    let mut out = scan.fns;
    // Route keys outside any fn (e.g. in a const) still count for the file.
    let mut whole = BodyScan::default();
    whole.visit_file(&ast);
    let top_level_routes = whole.route_keys;
    if let Some(first) = out.first_mut() {
        first.route_keys.extend(top_level_routes);
    } else if !top_level_routes.is_empty() {
        out.push(FnFacts {
            file: file.to_string(),
            name: String::new(),
            route_keys: top_level_routes,
            ..FnFacts::default()
        });
    }
    out
}

/// Fns by name (several fns may share one).
pub struct Graph<'a> {
    by_name: HashMap<&'a str, Vec<&'a FnFacts>>,
}

impl<'a> Graph<'a> {
    pub fn new(fns: impl IntoIterator<Item = &'a FnFacts>) -> Self {
        let mut by_name: HashMap<&str, Vec<&FnFacts>> = HashMap::new();
        for f in fns {
            by_name.entry(f.name.as_str()).or_default().push(f);
        }
        Self { by_name }
    }

    /// Every need reachable from `roots`, each with one call chain to it.
    pub fn needs_from(
        &self,
        roots: impl IntoIterator<Item = String>,
    ) -> BTreeMap<Need, Vec<String>> {
        let mut parent: HashMap<String, Option<String>> = HashMap::new();
        let mut queue = VecDeque::new();
        for root in roots {
            if !parent.contains_key(&root) {
                parent.insert(root.clone(), None);
                queue.push_back(root);
            }
        }
        let mut needs: BTreeMap<Need, Vec<String>> = BTreeMap::new();
        while let Some(name) = queue.pop_front() {
            for f in self.by_name.get(name.as_str()).into_iter().flatten() {
                for need in &f.needs {
                    needs.entry(need.clone()).or_insert_with(|| {
                        let mut chain = vec![format!("{} ({})", f.name, f.file)];
                        let mut at = parent.get(&name).cloned().flatten();
                        while let Some(p) = at {
                            chain.push(p.clone());
                            at = parent.get(&p).cloned().flatten();
                        }
                        chain.reverse();
                        chain
                    });
                }
                for call in &f.calls {
                    if !parent.contains_key(call) && self.by_name.contains_key(call.as_str()) {
                        parent.insert(call.clone(), Some(name.clone()));
                        queue.push_back(call.clone());
                    }
                }
            }
        }
        needs
    }
}

#[test]
fn lexer_skips_comments_strings_chars_and_test_modules() {
    let src = r####"
        // fn in_comment() { client().scan() }
        /* fn block() { /* nested */ client().scan() } */
        fn real<'a>(x: &'a str) -> impl Fn(u8) -> u8 + 'a {
            let s = "fn not_a_fn() { client().scan() }";
            let r = r#"client().delete_item("x")"#;
            let q = '"'; let b = b'{'; let e = '\'';
            let _ = self.store.client().query().index_name(GSI1).send();
            let put = Put::builder().build();
            helper(s, r);
            match key { "GET /v1/things/{id}" => (), _ => () }
            |y| y
        }
        #[cfg(test)]
        #[allow(unused)]
        mod tests { fn hidden() { client.delete_item() } }
        trait T { fn declared(&self) -> u8; }
        fn after() { let client = c(); client.get_item(); }
        fn maybe_index(&self) { self.client.scan().set_index_name(i).send() }
    "####;
    let fns = analyse("x.rs", src);
    let names: Vec<&str> = fns.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["real", "declared", "after", "maybe_index"]);
    let real = &fns[0];
    let actions: BTreeSet<(String, bool)> = real
        .needs
        .iter()
        .map(|n| (n.action.clone(), n.on_index))
        .collect();
    let expected: BTreeSet<(String, bool)> = [
        ("Query".to_string(), false),
        ("Query".to_string(), true),
        ("PutItem".to_string(), false),
    ]
    .into_iter()
    .collect();
    assert_eq!(actions, expected);
    assert!(real.calls.contains("helper"));
    assert!(real.route_keys.contains("GET /v1/things/{id}"));
    assert!(fns[1].needs.is_empty() && fns[1].calls.is_empty());
    assert_eq!(
        fns[2]
            .needs
            .iter()
            .map(|n| n.action.as_str())
            .collect::<Vec<_>>(),
        ["GetItem"]
    );
    let scans: Vec<bool> = fns[3].needs.iter().map(|n| n.on_index).collect();
    assert_eq!(scans, [false, true], "Scan on the table and on the index");
}

#[test]
fn needs_follow_calls_by_name_with_a_chain() {
    let handler = analyse(
        "functions/f/src/lib.rs",
        "fn handle() { deps.store.load(); }",
    );
    let store = analyse(
        "shared/src/store/x.rs",
        "fn load(&self) { self.inner() } fn inner(&self) { self.client().get_item(); } \
         fn unrelated(&self) { self.client().scan(); }",
    );
    let graph = Graph::new(handler.iter().chain(&store));
    let needs = graph.needs_from(["handle".to_string()]);
    let get = Need {
        action: "GetItem".into(),
        on_index: false,
    };
    assert_eq!(needs.keys().collect::<Vec<_>>(), [&get]);
    assert_eq!(
        needs[&get],
        ["handle", "load", "inner (shared/src/store/x.rs)"]
    );
}
