//! `config::uci` against the real thing: OpenWrt's libuci (the C library behind `uci` and every
//! OpenWrt service, built from the sources bundled in the `libuci-sys` crate) loads the same
//! files, and both must see the same sections, types, names, options, lists and values, or
//! both must refuse the file at the same line. The corpus: real-world OpenWrt configs
//! (tests/fixtures/uci/), deliberately broken files, and thousands of generated ones.
//! Not built for musl targets (no libuci-sys there: see Cargo.toml).
#![cfg(not(target_env = "musl"))]

use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;

use libuci_sys::{
    uci_alloc_context, uci_element, uci_free_context, uci_get_errorstr, uci_list, uci_load,
    uci_option, uci_option_type_UCI_TYPE_STRING, uci_package, uci_section, uci_set_confdir,
    uci_set_savedir,
};
use proptest::prelude::*;
use wifipos::config::uci;

/// What both parsers must agree on: per section its type, name (`None` if anonymous) and
/// options in order as `(name, is_list, values)`.
type Model = Vec<(String, Option<String>, Vec<(String, bool, Vec<String>)>)>;

/// `Ok(model)` or `Err(line)`.
type Outcome = Result<Model, usize>;

fn ours(text: &str) -> Outcome {
    let pkg = uci::parse(text).map_err(|e| e.line)?;
    Ok(pkg
        .sections
        .iter()
        .map(|s| {
            (
                s.kind.clone(),
                s.name.clone(),
                s.options
                    .iter()
                    .map(|o| {
                        (
                            o.name.clone(),
                            o.is_list,
                            o.values().map(str::to_owned).collect(),
                        )
                    })
                    .collect(),
            )
        })
        .collect())
}

/// # Safety
/// `s` is null or a NUL-terminated string owned by libuci.
unsafe fn string(s: *const libc::c_char) -> String {
    String::from_utf8_lossy(CStr::from_ptr(s).to_bytes()).into_owned()
}

/// Walks a libuci `uci_list` whose nodes are the first field of an element.
///
/// # Safety
/// `head` is a live list head of a loaded package.
unsafe fn elements(head: *const uci_list) -> Vec<*mut uci_element> {
    let mut out = Vec::new();
    let mut p = (*head).next;
    while !ptr::eq(p, head) {
        out.push(p.cast::<uci_element>());
        p = (*p).next;
    }
    out
}

/// libuci's `uci_get_errorstr` formats into one static buffer: tests running in parallel
/// threads would garble each other's messages, so libuci is called by one thread at a time.
static LIBUCI: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn libuci(text: &str) -> Outcome {
    let _one_at_a_time = LIBUCI.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let save = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), text).unwrap();
    let confdir = CString::new(dir.path().to_str().unwrap()).unwrap();
    let savedir = CString::new(save.path().to_str().unwrap()).unwrap();
    // SAFETY: plain use of the libuci API; the context and everything it loaded are freed at
    // the end, strings are copied out before.
    unsafe {
        let ctx = uci_alloc_context();
        assert!(!ctx.is_null());
        assert_eq!(uci_set_confdir(ctx, confdir.as_ptr()), 0);
        assert_eq!(uci_set_savedir(ctx, savedir.as_ptr()), 0);
        let mut pkg: *mut uci_package = ptr::null_mut();
        let rc = uci_load(ctx, c"f".as_ptr(), &mut pkg);
        let out = if rc != 0 {
            let mut msg: *mut libc::c_char = ptr::null_mut();
            uci_get_errorstr(ctx, &mut msg, c"".as_ptr());
            let m = string(msg);
            libc::free(msg.cast());
            let line = m
                .split("at line ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("libuci error without a line: {m}"));
            Err(line)
        } else {
            let mut model = Model::new();
            for s in elements(&(*pkg).sections) {
                let s = s.cast::<uci_section>();
                let mut opts = Vec::new();
                for o in elements(&(*s).options) {
                    let o = o.cast::<uci_option>();
                    let name = string((*o).e.name);
                    if (*o).type_ != uci_option_type_UCI_TYPE_STRING {
                        let items = elements(&(*o).v.list)
                            .into_iter()
                            .map(|i| string((*i).name))
                            .collect();
                        opts.push((name, true, items));
                    } else {
                        opts.push((name, false, vec![string((*o).v.string)]));
                    }
                }
                let name = (!(*s).anonymous).then(|| string((*s).e.name));
                model.push((string((*s).type_), name, opts));
            }
            Ok(model)
        };
        uci_free_context(ctx);
        out
    }
}

fn fixtures(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/uci");

#[test]
fn real_world_configs_read_the_same_as_with_libuci() {
    let files = fixtures(Path::new(FIXTURES));
    assert!(files.len() >= 9, "corpus missing: {files:?}");
    for (name, text) in files {
        let theirs = libuci(&text);
        assert!(theirs.is_ok(), "{name}: libuci refuses it: {theirs:?}");
        assert_eq!(ours(&text), theirs, "{name}");
    }
}

#[test]
fn broken_files_are_refused_at_the_same_line_as_libuci() {
    let files = fixtures(&Path::new(FIXTURES).join("broken"));
    assert!(files.len() >= 11);
    for (name, text) in files {
        let theirs = libuci(&text);
        assert!(theirs.is_err(), "{name}: libuci accepts it");
        assert_eq!(ours(&text), theirs, "{name}");
    }
}

#[test]
fn the_tricky_fixture_means_what_its_comments_say() {
    // Guards the oracle itself: if libuci and we both misread, this says how.
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("tricky")).unwrap();
    let pkg = uci::parse(&text).unwrap();
    let named = &pkg.sections[0];
    let v = |n: &str| {
        named
            .get(n)
            .map(|o| o.values().collect::<Vec<_>>().join("|"))
    };
    assert_eq!(v("single").unwrap(), "it's");
    assert_eq!(v("double").unwrap(), "say \"hi\" \\ backslash");
    assert_eq!(v("joined").unwrap(), "abcd");
    assert_eq!(v("bare").unwrap(), "value");
    assert_eq!(v("empty"), None);
    assert_eq!(v("spaces").unwrap(), "  padded  ");
    assert_eq!(v("multi").unwrap(), "first line\nsecond line");
    assert_eq!(v("cont").unwrap(), "barecontinued");
    assert_eq!(v("dq_cont").unwrap(), "one two");
    assert_eq!(v("l").unwrap(), "x|y|z|");
    assert_eq!(v("tolist").unwrap(), "was an option|now a list");
    assert_eq!(v("fromlist").unwrap(), "b");
    assert_eq!(v("gone").unwrap(), "here", "an empty value changes nothing");
    assert_eq!(v("reopened").unwrap(), "yes");
    let order: Vec<&str> = named.options.iter().map(|o| o.name.as_str()).collect();
    let pos = |n: &str| order.iter().position(|o| *o == n).unwrap();
    assert!(pos("dup") > pos("other"), "setting again moves to the end");
    assert!(
        pos("same") < pos("zz"),
        "setting the same value keeps the place"
    );
    assert_eq!(pkg.sections[1].name, None);
    assert_eq!(pkg.sections[2].kind, "short");
    let semi: Vec<_> = pkg.sections.iter().filter(|s| s.kind == "semi").collect();
    assert_eq!(semi[0].options.len(), 1);
    assert!(
        semi[1].options.is_empty(),
        "libuci drops what follows `word;`"
    );
}

/// Words UCI files are made of, to generate files that hit every branch of the parser.
const PIECES: &[&str] = &[
    "config",
    "option",
    "list",
    "package",
    "c",
    "o",
    "l",
    "p",
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\r\n",
    "'",
    "\"",
    "\\",
    "#",
    ";",
    "a",
    "b_1",
    "wifipos",
    "x-y",
    "é",
    "''",
    "\"\"",
    "'v w'",
    "\"q\\\"r\"",
    "\\\n",
    "\u{1}",
    "1",
    ".",
];

fn generated() -> impl Strategy<Value = String> {
    let statement = prop_oneof![
        // Mostly well-formed statements with odd values…
        (
            prop::sample::select(vec!["config", "c"]),
            prop::sample::select(PIECES),
            prop::sample::select(PIECES)
        )
            .prop_map(|(c, t, n)| format!("{c} {t} {n}\n")),
        (
            prop::sample::select(vec!["\toption", "\tlist", "o", "l"]),
            prop::sample::select(PIECES),
            prop::collection::vec(prop::sample::select(PIECES), 0..5)
        )
            .prop_map(|(c, n, v)| format!("{c} {n} {}\n", v.concat())),
        // …and pure noise.
        prop::collection::vec(prop::sample::select(PIECES), 0..8).prop_map(|v| v.concat()),
    ];
    prop::collection::vec(statement, 0..8).prop_map(|v| format!("config t 's'\n{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn generated_files_read_the_same_as_with_libuci(text in generated()) {
        // libuci counts no line for a last line without a newline; we do (on purpose).
        let text = if text.ends_with('\n') { text } else { format!("{text}\n") };
        prop_assert_eq!(ours(&text), libuci(&text), "{:?}", text);
    }
}
