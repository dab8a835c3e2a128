//! Generator-driven tests ("fuzzing" on stable Rust) over every pure parser
//! of the hostile mail store: message file names, `dovecot-uidlist`,
//! `dovecot-keywords`, subscriptions, `maildirsize`, folder names and
//! modified UTF-7, MIME / BODYSTRUCTURE and the other content parameters.
//!
//! Each target makes its inputs three ways, from a small seeded generator
//! (splitmix64, no dependency): random bytes, structured valid inputs, and
//! mutations of valid inputs (bit flips, truncation, splicing,
//! duplication, huge numbers, long lines, deep nesting). Every case must
//! not panic, and must keep the target's properties (unique UIDs, round
//! trips, bounded output, ...).
//!
//! Running it:
//!
//! - `cargo test --test fuzz`: a bounded number of cases per target
//!   (a few seconds in a debug build), always the same cases.
//! - `FUZZ_CASES=100000 cargo test --release --test fuzz`: more cases per
//!   target, from a fresh base seed (printed; `FUZZ_BASE_SEED=` repeats a
//!   run).
//! - `FUZZ_SECONDS=120 cargo test --release --test fuzz`: each target runs
//!   for that many seconds (targets run in parallel, one per test thread).
//! - A failing case prints its seed; `FUZZ_SEED=0x… cargo test --test fuzz
//!   <target>` replays exactly that case.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime};

use maildir_events::content::{self, ContentOptions, InclusionMode};
use maildir_events::maildir::keywords::{self, Keywords};
use maildir_events::maildir::name::{self, Flags};
use maildir_events::maildir::{folders, mutf7, quota, subscriptions, uidlist};

// ---------------------------------------------------------------------
// The generator and the driver.

/// splitmix64: small, fast and good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with `percent` % probability.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length: mostly short, sometimes long.
    fn len(&mut self, max: usize) -> usize {
        match self.below(10) {
            0 => self.below(max + 1),
            1..=3 => self.below(max.min(64) + 1),
            _ => self.below(max.min(12) + 1),
        }
    }

    /// Bytes from `alphabet`, or any bytes when it is empty.
    fn bytes_from(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if alphabet.is_empty() {
                    self.next() as u8
                } else {
                    *self.pick(alphabet)
                }
            })
            .collect()
    }

    /// Random bytes: half of the time any byte, else bytes from `alphabet`.
    fn junk(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let len = self.len(max);
        if self.chance(50) {
            self.bytes_from(&[], len)
        } else {
            self.bytes_from(alphabet, len)
        }
    }

    /// A string of random characters, ASCII and not.
    fn text(&mut self, max: usize) -> String {
        let len = self.len(max);
        (0..len).map(|_| self.char()).collect()
    }

    fn char(&mut self) -> char {
        match self.below(8) {
            0..=3 => char::from(b' ' + self.below(95) as u8),
            4 => char::from(self.below(0x80) as u8),
            5 => *self.pick(&[
                '&', '-', '.', '/', '\t', 'ä', 'ü', '€', '日', '😀', '\u{7f}',
            ]),
            6 => char::from_u32(0x80 + self.below(0x800) as u32).unwrap_or('x'),
            _ => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('\u{10ffff}'),
        }
    }
}

/// Numbers at the edges of the integer types.
const HUGE: &[&str] = &[
    "0",
    "4294967294",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "-1",
    "00000000000000000000000000000001",
];

/// Changes `input` a few times: bit flips, truncation, splicing in junk
/// or a token, duplicating or deleting a range, a huge number, a long
/// line, swapping lines.
fn mutate(rng: &mut Rng, mut input: Vec<u8>, tokens: &[&[u8]]) -> Vec<u8> {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let at = rng.below(input.len() + 1);
        match rng.below(10) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.truncate(at),
            2 => {
                let junk = rng.junk(b"\n\r\0 :.,=&-\t\x01", 16);
                input.splice(at..at, junk);
            }
            3 if !tokens.is_empty() => {
                let token = rng.pick(tokens).to_vec();
                input.splice(at..at, token);
            }
            4 => {
                let end = (at + rng.len(256)).min(input.len());
                let copy = input[at..end].to_vec();
                let times = if rng.chance(10) {
                    1 + rng.below(200)
                } else {
                    1
                };
                for _ in 0..times {
                    input.splice(end..end, copy.iter().copied());
                }
            }
            5 => {
                let end = (at + rng.len(64)).min(input.len());
                input.drain(at..end);
            }
            6 => {
                let n = rng.pick(HUGE).as_bytes().to_vec();
                input.splice(at..at, n);
            }
            7 => {
                let b = *rng.pick(b"a0 \t&=-(\"\\");
                let n = 1000 + rng.below(9000);
                input.splice(at..at, std::iter::repeat_n(b, n));
            }
            8 => {
                let mut lines: Vec<Vec<u8>> =
                    input.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                if lines.len() > 1 {
                    let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(i, j);
                }
                input = lines.join(&b'\n');
            }
            _ => {
                let b = *rng.pick(b"\n\r\0:/.,=&-\t ");
                input.insert(at, b);
            }
        }
    }
    input
}

/// How one target's cases are made: random bytes, valid, or mutated valid.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Junk,
    Valid,
    Mutated,
}

/// How many cases each target runs by default.
const DEFAULT_CASES: u64 = 5000;

/// The fixed base seed of the default run.
const DEFAULT_BASE: u64 = 0x6d61_696c_6469_7221;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// A stable number per target name, so targets explore different seeds.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs `case` on seeds until the budget is spent. `weight` scales the
/// default number of cases for targets whose cases cost more. Each case
/// gets its own seed, printed when it fails.
fn run(target: &str, weight: f64, case: impl Fn(&mut Rng, Mode)) {
    let run_one = |seed: u64| {
        let mut rng = Rng(seed);
        let mode = match rng.below(3) {
            0 => Mode::Junk,
            1 => Mode::Valid,
            _ => Mode::Mutated,
        };
        let result = catch_unwind(AssertUnwindSafe(|| case(&mut rng, mode)));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{target}: case failed ({mode:?}): {msg}\n\
                 replay: FUZZ_SEED={seed:#018x} cargo test --test fuzz {target}"
            );
        }
    };
    if let Some(seed) = env_u64("FUZZ_SEED") {
        run_one(seed);
        return;
    }
    let long = env_u64("FUZZ_CASES").is_some() || env_u64("FUZZ_SECONDS").is_some();
    let base = env_u64("FUZZ_BASE_SEED").unwrap_or_else(|| {
        if long {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        } else {
            DEFAULT_BASE
        }
    });
    let cases = env_u64("FUZZ_CASES").unwrap_or(((DEFAULT_CASES as f64) * weight) as u64);
    let deadline = env_u64("FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let start = Instant::now();
    let mut done = 0u64;
    let mut seeds = Rng(base ^ name_hash(target));
    loop {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            None if done >= cases => break,
            _ => {}
        }
        run_one(seeds.next());
        done += 1;
    }
    if long {
        eprintln!(
            "fuzz {target}: {done} cases in {:.1} s, base seed FUZZ_BASE_SEED={base:#018x}",
            start.elapsed().as_secs_f64()
        );
    }
}

/// Lossy text for assertion messages, cut short.
fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{s:?}… ({} bytes)", bytes.len())
    } else {
        format!("{s:?}")
    }
}

// ---------------------------------------------------------------------
// Message file names.

/// Bytes a unique part may hold (not `:`, `;`, `!`, `,`, `/`).
const UNIQ: &[u8] = b"0123456789abcdefMPVIRQX._#-xyz\\07\xc3\xa4\xff";

#[test]
fn file_names() {
    run("file_names", 2.0, |rng, mode| {
        let sep = *rng.pick(b":;!");
        match mode {
            Mode::Valid => {
                let n = 1 + rng.len(40);
                let mut uniq = rng.bytes_from(UNIQ, n);
                if uniq[0] == b'.' {
                    uniq[0] = b'1';
                }
                let size = rng.chance(70).then(|| rng.next() >> rng.below(64));
                let vsize = rng.chance(70).then(|| rng.next() >> rng.below(64));
                let flags = Flags(rng.next() as u32);
                let mut base = uniq.clone();
                if let Some(s) = size {
                    base.extend_from_slice(format!(",S={s}").as_bytes());
                }
                if let Some(w) = vsize {
                    base.extend_from_slice(format!(",W={w}").as_bytes());
                }
                let mut file = base.clone();
                let has_info = rng.chance(80);
                if has_info {
                    file.push(sep);
                    file.extend_from_slice(b"2,");
                    file.extend_from_slice(flags.letters().as_bytes());
                    if rng.chance(10) {
                        file.extend_from_slice(b",extra");
                    }
                }
                let got = name::parse(&file, sep).expect("a valid name parses");
                assert_eq!(got.base, &base[..], "{}", show(&file));
                assert_eq!(got.size, size, "{}", show(&file));
                assert_eq!(got.vsize, vsize, "{}", show(&file));
                let want = if has_info { flags } else { Flags::default() };
                assert_eq!(got.flags, want, "{}", show(&file));
                assert_eq!(Flags::from_letters(flags.letters().as_bytes()), flags);
            }
            Mode::Junk | Mode::Mutated => {
                let file = match mode {
                    Mode::Junk => rng.junk(b"0123456789.:;!,=SWMP2abcFRST\xff", 300),
                    _ => {
                        let valid = b"1276528487.M364837P9451.kurkku,S=1355,W=1394:2,FRSab";
                        mutate(rng, valid.to_vec(), &[b",S=", b",W=", b":2,", b":1,"])
                    }
                };
                if let Some(got) = name::parse(&file, sep) {
                    assert!(!got.base.is_empty());
                    assert!(!got.base.contains(&sep));
                    assert!(file.starts_with(got.base));
                    assert!(got.flags.letters().len() <= 32);
                }
                let other = rng.junk(b"0123456789.M", 40);
                let ab = name::dovecot_order(&file, &other);
                assert_eq!(ab, name::dovecot_order(&other, &file).reverse());
                assert_eq!(name::dovecot_order(&file, &file), std::cmp::Ordering::Equal);
            }
        }
    });
}

// ---------------------------------------------------------------------
// dovecot-uidlist and courierimapuiddb.

/// A well-formed v3 or v1 file and the records it holds.
fn valid_uidlist(rng: &mut Rng) -> (Vec<u8>, Vec<(u32, Vec<u8>)>) {
    let v3 = rng.chance(80);
    let n = rng.len(200);
    let mut uid = 0u32;
    let mut records = Vec::new();
    let mut names = HashSet::new();
    for _ in 0..n {
        let step = if rng.chance(5) { 1 << 30 } else { 10 };
        uid = uid.saturating_add(1 + rng.below(step) as u32);
        if uid >= u32::MAX - 1 {
            break;
        }
        let host_len = 1 + rng.below(8);
        let host = rng.bytes_from(b"hostabc-", host_len);
        let name = format!(
            "{}.M{}P{}.{},S={}",
            1_600_000_000 + rng.below(100_000_000),
            rng.below(1_000_000),
            rng.below(100_000),
            String::from_utf8_lossy(&host),
            rng.below(1 << 20)
        );
        if names.insert(name.clone()) {
            records.push((uid, name.into_bytes()));
        }
    }
    let next = uid
        .saturating_add(1 + rng.below(3) as u32)
        .min(u32::MAX - 1);
    let mut text = if v3 {
        format!(
            "3 V{} N{} G{:016x}{:016x}\n",
            1 + rng.below(u32::MAX as usize - 1),
            if rng.chance(30) { 1 } else { next },
            rng.next(),
            rng.next()
        )
    } else {
        format!("1 {} {next}\n", 1 + rng.below(1 << 31))
    }
    .into_bytes();
    for (uid, name) in &records {
        let line = if v3 {
            let ext = if rng.chance(20) { " W123 Gxyz" } else { "" };
            let stale = if rng.chance(10) { ":2,S" } else { "" };
            format!("{uid}{ext} :{}{stale}\n", String::from_utf8_lossy(name))
        } else {
            format!("{uid} {}\n", String::from_utf8_lossy(name))
        };
        text.extend_from_slice(line.as_bytes());
    }
    (text, records)
}

#[test]
fn uidlist() {
    run("uidlist", 0.5, |rng, mode| {
        let file = match mode {
            Mode::Valid => {
                let (text, records) = valid_uidlist(rng);
                let list = uidlist::parse(&text).expect("a valid file parses");
                assert_eq!(list.records, records, "{}", show(&text));
                assert!(list.dropped.is_empty(), "{}", show(&text));
                assert!(list.warnings.is_empty(), "{:?}", list.warnings);
                text
            }
            Mode::Junk => {
                let mut text = if rng.chance(70) {
                    b"3 V42 N1\n".to_vec()
                } else {
                    Vec::new()
                };
                text.extend(rng.junk(b"0123456789 :\nVNGWa\r/\xff", 2000));
                text
            }
            Mode::Mutated => {
                let (text, _) = valid_uidlist(rng);
                mutate(
                    rng,
                    text,
                    &[b"\n1 :a\n", b"\n4294967295 :x\n", b" :", b"\n0 :z\n"],
                )
            }
        };
        let lines = file.split(|&b| b == b'\n').count();
        if let Ok(list) = uidlist::parse(&file) {
            let mut uids = HashSet::new();
            let mut names = HashSet::new();
            let mut prev = 0;
            for (uid, name) in &list.records {
                assert!(*uid > prev, "UIDs must increase: {}", show(&file));
                assert!(*uid < u32::MAX);
                prev = *uid;
                assert!(uids.insert(*uid), "duplicate UID {uid}: {}", show(&file));
                assert!(
                    names.insert(name.clone()),
                    "duplicate name: {}",
                    show(&file)
                );
                assert!(!name.is_empty() && !name.contains(&b'/') && !name.contains(&b':'));
                assert!(list.next_uid > *uid);
            }
            assert!(list.uidvalidity != 0 && list.next_uid != 0);
            assert!(list.warnings.len() <= uidlist::MAX_EXAMPLES);
            assert!(
                list.warnings.iter().all(|w| w.len() < 600),
                "{:?}",
                list.warnings
            );
            assert!(list.dropped.total() + list.records.len() <= lines);
            assert_eq!(list.lookup_map().len(), list.records.len());
        }
    });
}

// ---------------------------------------------------------------------
// dovecot-keywords.

#[test]
fn keywords() {
    run("keywords", 1.0, |rng, mode| {
        let valid = |rng: &mut Rng| {
            let mut want: Vec<(u8, String)> = Vec::new();
            let mut taken = HashSet::new();
            for i in 0..26u8 {
                if rng.chance(40) {
                    let name: String = (0..1 + rng.below(20))
                        .map(|_| *rng.pick(&['$', 'J', 'u', 'n', 'k', 'l', '1', 'é', ' ']))
                        .collect();
                    if !name.trim().is_empty() && taken.insert(name.to_ascii_lowercase()) {
                        want.push((i, name));
                    }
                }
            }
            let mut lines: Vec<String> = want.iter().map(|(i, n)| format!("{i} {n}")).collect();
            // Any line order gives the same keywords.
            for i in (1..lines.len()).rev() {
                lines.swap(i, rng.below(i + 1));
            }
            let text = lines.join(if rng.chance(20) { "\r\n" } else { "\n" });
            (text.into_bytes(), want)
        };
        let text = match mode {
            Mode::Valid => {
                let (text, want) = valid(rng);
                let (got, ignored) = Keywords::parse_counted(&text);
                let got: Vec<(u8, String)> = got.iter().map(|(i, n)| (i, n.to_string())).collect();
                assert_eq!(got, want, "{}", show(&text));
                assert_eq!(ignored.total(), 0, "{}", show(&text));
                text
            }
            Mode::Junk => rng.junk(b"0123456789 \n\ra$\xff", 3000),
            Mode::Mutated => {
                let (text, _) = valid(rng);
                mutate(
                    rng,
                    text,
                    &[
                        b"\n26 x\n",
                        b"\n0 dup\n0 dup\n",
                        b"\n99999999999999999999 x\n",
                    ],
                )
            }
        };
        let (got, ignored) = Keywords::parse_counted(&text);
        let mut names = HashSet::new();
        for (i, name) in got.iter() {
            assert!(i < 26);
            assert!(!name.is_empty() && name.len() <= keywords::MAX_LINE);
            assert!(names.insert(name.to_ascii_lowercase()), "{}", show(&text));
        }
        assert!(ignored.examples.len() <= keywords::MAX_EXAMPLES);
        assert!(ignored.total() <= text.split(|&b| b == b'\n').count());
        assert_eq!(Keywords::parse(&text), got);
    });
}

// ---------------------------------------------------------------------
// subscriptions and courierimapsubscribed.

/// One folder level: no NUL, no `.`, no `/` (the namespace separator used
/// below), not empty.
fn level(rng: &mut Rng) -> String {
    loop {
        let s: String = rng
            .text(12)
            .chars()
            .filter(|&c| c != '\0' && c != '.' && c != '/' && c != '\n' && c != '\r')
            .collect();
        if !s.is_empty() && !s.eq_ignore_ascii_case("INBOX") {
            return s;
        }
    }
}

/// Dovecot's tab escaping of one level (`str_append_tabescaped()`).
fn tab_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in s {
        match b {
            0x01 => out.extend_from_slice(b"\x011"),
            b'\t' => out.extend_from_slice(b"\x01t"),
            b'\r' => out.extend_from_slice(b"\x01r"),
            b'\n' => out.extend_from_slice(b"\x01n"),
            _ => out.push(b),
        }
    }
    out
}

#[test]
fn subscriptions() {
    run("subscriptions", 1.0, |rng, mode| {
        let utf8 = rng.chance(50);
        let courier = rng.chance(30);
        let v2 = !courier && rng.chance(60);
        let make = |rng: &mut Rng| {
            let mut want: Vec<String> = Vec::new();
            let mut lines: Vec<Vec<u8>> = Vec::new();
            for _ in 0..rng.len(30) {
                let levels: Vec<String> = (0..1 + rng.below(3)).map(|_| level(rng)).collect();
                let on_disk: Vec<Vec<u8>> = levels
                    .iter()
                    .map(|l| {
                        if utf8 {
                            l.clone().into_bytes()
                        } else {
                            mutf7::encode(l).into_bytes()
                        }
                    })
                    .collect();
                let line = if v2 {
                    let escaped: Vec<Vec<u8>> = on_disk.iter().map(|l| tab_escape(l)).collect();
                    escaped.join(&b'\t')
                } else {
                    // Version 1 and Courier lines cannot carry a line break.
                    if levels.iter().any(|l| l.contains(['\n', '\r'])) {
                        continue;
                    }
                    let mut line = if courier {
                        b"INBOX.".to_vec()
                    } else {
                        Vec::new()
                    };
                    line.extend(on_disk.join(&b'.'));
                    line
                };
                if !v2 && line.first() == Some(&b'#') {
                    continue;
                }
                let name = levels.join("/");
                if !want.contains(&name) {
                    want.push(name);
                }
                lines.push(line);
            }
            let mut text = if v2 { b"V\t2\n\n".to_vec() } else { Vec::new() };
            for l in &lines {
                text.extend_from_slice(l);
                text.push(b'\n');
            }
            (text, want)
        };
        let parse = |text: &[u8]| {
            if courier {
                subscriptions::parse_courier(text, '/', utf8)
            } else {
                subscriptions::parse_dovecot(text, '/', utf8)
            }
        };
        let text = match mode {
            Mode::Valid => {
                let (text, want) = make(rng);
                let got = parse(&text);
                assert_eq!(got.names, want, "{}", show(&text));
                assert_eq!(got.skipped_count, 0, "{:?}", got.skipped);
                assert_eq!(got.not_subscriptions, None);
                text
            }
            Mode::Junk => rng.junk(b"V\t2\n\x01tnr0.&-INBOXa/#", 5000),
            Mode::Mutated => {
                let (text, _) = make(rng);
                mutate(rng, text, &[b"\n..\n", b"&", b"\x01", b"\nINBOX.\n", b"\0"])
            }
        };
        let got = parse(&text);
        assert!(got.skipped.len() <= subscriptions::MAX_EXAMPLES);
        assert!(got.skipped_count >= got.skipped.len());
        assert!(
            got.skipped
                .iter()
                .all(|s| s.len() <= 3 * subscriptions::EXAMPLE_MAX + 3)
        );
        if got.not_subscriptions.is_some() {
            assert!(got.names.is_empty());
        }
        let unique: HashSet<&String> = got.names.iter().collect();
        assert_eq!(unique.len(), got.names.len());
        assert!(got.names.iter().all(|n| !n.is_empty() && !n.contains('\0')));
    });
}

// ---------------------------------------------------------------------
// maildirsize.

#[test]
fn maildirsize() {
    run("maildirsize", 1.0, |rng, mode| {
        let make = |rng: &mut Rng| {
            let storage = rng.next() >> 1 >> rng.below(63);
            let count = rng.next() >> 1 >> rng.below(63);
            let mut text = format!("{storage}S,{count}C\n");
            let (mut bytes, mut n) = (0i64, 0i64);
            for _ in 0..rng.len(100) {
                let b = (rng.next() % 2_000_000) as i64 - 1_000_000;
                let c = (rng.next() % 20) as i64 - 10;
                bytes += b;
                n += c;
                text.push_str(&if rng.chance(50) {
                    format!("{b:>12} {c:>12}\n")
                } else {
                    format!("{b} {c}\n")
                });
            }
            (text.into_bytes(), storage, count, bytes, n)
        };
        let text = match mode {
            Mode::Valid => {
                let (text, storage, count, bytes, n) = make(rng);
                let got = quota::parse(&text).expect("a valid file parses");
                assert_eq!(got.storage, (storage > 0).then_some(storage));
                assert_eq!(got.messages, (count > 0).then_some(count));
                assert_eq!((got.bytes, got.count, got.bad_lines), (bytes, n, 0));
                text
            }
            Mode::Junk => rng.junk(b"0123456789SC, -\n\t", 3000),
            Mode::Mutated => {
                let (text, ..) = make(rng);
                mutate(rng, text, &[b"S,", b"C", b" -", b"\n"])
            }
        };
        match quota::parse(&text) {
            Ok(m) => {
                assert!(m.storage.is_none_or(|s| s > 0 && s <= i64::MAX as u64));
                assert!(m.messages.is_none_or(|s| s > 0 && s <= i64::MAX as u64));
                assert!(m.bad_lines <= text.split(|&b| b == b'\n').count());
            }
            // At most 64 characters of the line, each escaped as `\u{…}`.
            Err(e) => assert!(e.len() < 64 * 10 + 100, "{e}"),
        }
    });
}

// ---------------------------------------------------------------------
// Modified UTF-7 and folder names.

#[test]
fn mutf7_and_folder_names() {
    run("mutf7_and_folder_names", 2.0, |rng, mode| {
        match mode {
            Mode::Valid => {
                // Any UTF-8 string without NUL round-trips.
                let s: String = rng.text(40).chars().filter(|&c| c != '\0').collect();
                let encoded = mutf7::encode(&s);
                assert!(
                    encoded.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{encoded:?}"
                );
                assert_eq!(
                    mutf7::decode(encoded.as_bytes()).as_deref(),
                    Some(s.as_str())
                );
                // A NUL never decodes.
                let with_nul = format!("{s}\0");
                assert_eq!(mutf7::decode(mutf7::encode(&with_nul).as_bytes()), None);
                // A folder directory of encoded levels names those levels.
                let levels: Vec<String> = (0..1 + rng.below(4)).map(|_| level(rng)).collect();
                let dir: Vec<u8> = levels
                    .iter()
                    .flat_map(|l| {
                        let mut v = b".".to_vec();
                        v.extend(mutf7::encode(l).into_bytes());
                        v
                    })
                    .collect();
                assert_eq!(folders::classify_dir(&dir), folders::DirKind::Folder);
                assert_eq!(
                    folders::imap_name(&dir, '/', false).ok(),
                    Some(levels.join("/")),
                    "{}",
                    show(&dir)
                );
                assert_eq!(folders::imap_name_lossy(&dir, '/', false), levels.join("/"));
            }
            Mode::Junk | Mode::Mutated => {
                let bytes = match mode {
                    Mode::Junk => rng.junk(b"&-+,ABCxyz09.\x7f ", 200),
                    _ => {
                        let s = rng.text(30);
                        let e = format!(".{}", mutf7::encode(&s));
                        mutate(
                            rng,
                            e.into_bytes(),
                            &[b"&", b"-", b"&-", b".", b"..", b"&AAA-"],
                        )
                    }
                };
                if let Some(s) = mutf7::decode(&bytes) {
                    assert!(!s.contains('\0'));
                    assert_eq!(mutf7::decode(mutf7::encode(&s).as_bytes()), Some(s));
                }
                let kind = folders::classify_dir(&bytes);
                assert_eq!(
                    folders::is_folder_dir(&bytes),
                    kind == folders::DirKind::Folder
                );
                let utf8 = rng.chance(50);
                match folders::imap_name(&bytes, '/', utf8) {
                    Ok(name) => {
                        assert!(bytes.is_empty() || kind == folders::DirKind::Folder);
                        assert_eq!(folders::imap_name_lossy(&bytes, '/', utf8), name);
                    }
                    Err(e) => assert!(!e.reason().is_empty()),
                }
                let mut invalid = folders::InvalidDirs::default();
                if let folders::DirKind::Invalid(why) = kind {
                    invalid.add(&bytes, why);
                    assert!(invalid.to_string().len() < 700);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------
// MIME, BODYSTRUCTURE and the content parameters.

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * k)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An RFC 2047 encoded word, B or Q, sometimes broken.
fn encoded_word(rng: &mut Rng) -> String {
    let text = rng.text(20);
    let charset = *rng.pick(&["utf-8", "UTF-8", "iso-8859-1", "x-unknown", ""]);
    match rng.below(4) {
        0 => format!("=?{charset}?B?{}?=", base64(text.as_bytes())),
        1 => {
            let q: String = text
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        char::from(b).to_string()
                    } else if b == b' ' {
                        "_".to_string()
                    } else {
                        format!("={b:02X}")
                    }
                })
                .collect();
            format!("=?{charset}?Q?{q}?=")
        }
        2 => format!("=?{charset}?B?{}", base64(text.as_bytes())),
        _ => format!("=?{charset}*en?q?{}?=", text.replace('?', "")),
    }
}

/// A header value with addresses: names, encoded words, comments,
/// groups, routes.
fn addresses(rng: &mut Rng) -> String {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let a = match rng.below(7) {
            0 => "alice@example.org".to_string(),
            1 => format!(
                "\"{}\" <bob@example.org>",
                rng.text(10).replace(['"', '\\'], "")
            ),
            2 => format!("{} <c@d.e>", encoded_word(rng)),
            3 => "undisclosed-recipients:;".to_string(),
            4 => "group: a@b.c, (comment (nested)) d@e.f;".to_string(),
            5 => "<@route.example,@r2:user@host>".to_string(),
            _ => format!("x@y (Name {})", rng.text(6).replace(['(', ')', '\\'], "")),
        };
        out.push(a);
    }
    out.join(", ")
}

/// One MIME entity: header and body; `depth` limits the nesting.
fn mime_part(rng: &mut Rng, depth: usize, nl: &str, top: bool) -> String {
    let mut h = String::new();
    if top || rng.chance(30) {
        h += &format!("From: {}{nl}", addresses(rng));
        h += &format!("To: {}{nl}", addresses(rng));
        if rng.chance(50) {
            h += &format!("Cc: {}{nl}", addresses(rng));
        }
        h += &format!("Subject: {} {}{nl}", encoded_word(rng), rng.text(10));
        h += &format!("Date: Mon, 2 Jan 2006 15:04:05 -0700{nl}");
        h += &format!("Message-ID: <{}@example.org>{nl}", rng.below(1_000_000));
        if rng.chance(50) {
            h += &format!("Return-Path: <bounce{}@example.org>{nl}", rng.below(100));
            h += &format!("Delivered-To: rcpt@example.org{nl}");
        }
    }
    if rng.chance(90) {
        h += &format!("MIME-Version: 1.0{nl}");
    }
    let kind = if depth == 0 { 0 } else { rng.below(4) };
    let mut body = String::new();
    match kind {
        1 | 2 => {
            let boundary: String = (0..1 + rng.below(30))
                .map(|_| *rng.pick(&['a', 'B', '9', '=', '_', '-', '\'', '(', '+', '?']))
                .collect();
            let sub = *rng.pick(&["mixed", "alternative", "digest", "related", "x"]);
            h += &format!("Content-Type: multipart/{sub};{nl} boundary=\"{boundary}\"{nl}");
            body += &format!("preamble {}{nl}", rng.text(10));
            for _ in 0..rng.below(4) {
                body += &format!("--{boundary}{nl}");
                body += &mime_part(rng, depth - 1, nl, false);
                body += nl;
            }
            if rng.chance(80) {
                body += &format!("--{boundary}--{nl}epilogue{nl}");
            }
        }
        3 => {
            h += &format!("Content-Type: message/rfc822{nl}");
            body += &mime_part(rng, depth - 1, nl, true);
        }
        _ => {
            let ct = *rng.pick(&[
                "text/plain; charset=utf-8",
                "text/html; charset=\"iso-8859-1\"; format=flowed",
                "application/octet-stream; name*0*=utf-8''%E2%82%AC; name*1=\".txt\"",
                "image/png; name=\"a b.png\"",
                "text/plain; charset*=utf-8'en'%C3%A4",
                "text",
                "; broken=",
            ]);
            h += &format!("Content-Type: {ct}{nl}");
            if rng.chance(50) {
                let cte = *rng.pick(&["base64", "quoted-printable", "7bit", "8bit", "x-uue"]);
                h += &format!("Content-Transfer-Encoding: {cte}{nl}");
            }
            if rng.chance(30) {
                h += &format!(
                    "Content-Disposition: attachment; filename*=UTF-8''{}{nl}",
                    rng.below(1000)
                );
            }
            if rng.chance(20) {
                h += &format!(
                    "Content-Language: en, de{nl}Content-ID: <{}@x>{nl}",
                    rng.below(99)
                );
            }
            for _ in 0..rng.len(20) {
                body += &rng.text(80).replace(['\r', '\n'], " ");
                body += nl;
            }
        }
    }
    format!("{h}{nl}{body}")
}

/// The content options with every parameter on.
fn all_on(mode: InclusionMode, max_size: usize) -> ContentOptions {
    ContentOptions {
        message_content: true,
        mode,
        max_size,
        body_structure: true,
        envelope: true,
        message_id: true,
        subject: true,
        from: true,
        max_read: 0,
    }
}

/// The checks every message must pass: no panic, no internal error, an
/// output bounded by the input, the same answer twice.
fn check_message(raw: &[u8], rng: &mut Rng) {
    let bs = content::body_structure(raw);
    assert!(bs.starts_with(b"(") && bs.ends_with(b")"));
    assert!(
        bs.len() <= 64 * raw.len() + 1024,
        "{} bytes of BODYSTRUCTURE from {} bytes",
        bs.len(),
        raw.len()
    );
    let mode = *rng.pick(&[
        InclusionMode::Standard,
        InclusionMode::Message,
        InclusionMode::Header,
        InclusionMode::Body,
        InclusionMode::HeaderBody,
    ]);
    let cap = if rng.chance(30) { 0 } else { rng.below(4096) };
    let c = content::extract(raw, &all_on(mode, cap));
    assert!(
        !c.warnings.iter().any(|w| w.contains("internal error")),
        "{:?}",
        c.warnings
    );
    assert!(c.warnings.len() <= 4, "{:?}", c.warnings);
    assert!(c.warnings.iter().all(|w| w.len() < 400), "{:?}", c.warnings);
    if let Some(bs_str) = &c.body_structure {
        assert_eq!(bs_str.as_bytes(), String::from_utf8_lossy(&bs).as_bytes());
    }
    if let Some(mc) = &c.message_content {
        // Lossy decoding may turn one byte into three.
        let limit = if cap == 0 || mode == InclusionMode::HeaderBody {
            2 * raw.len()
        } else {
            cap
        };
        assert!(mc.len() <= 3 * limit + 3, "{} > {limit}", mc.len());
    }
    for v in [&c.envelope, &c.message_id, &c.subject, &c.from]
        .into_iter()
        .flatten()
    {
        assert!(v.len() <= 3 * raw.len() + 64, "{v:?}");
    }
}

#[test]
fn mime_and_bodystructure() {
    run("mime_and_bodystructure", 0.2, |rng, mode| {
        let nl = if rng.chance(70) { "\n" } else { "\r\n" };
        let raw = match mode {
            Mode::Valid => {
                let depth = 1 + rng.below(5);
                mime_part(rng, depth, nl, true).into_bytes()
            }
            Mode::Junk => rng.junk(
                b"-\n\r:;=\"()<>@,.\\ MIMEContent-Type/multipart boundary",
                4000,
            ),
            Mode::Mutated => {
                let depth = 1 + rng.below(5);
                let valid = mime_part(rng, depth, nl, true).into_bytes();
                mutate(
                    rng,
                    valid,
                    &[
                        b"\n--",
                        b"--\n",
                        b"\nContent-Type: multipart/mixed; boundary=x\n\n--x\n",
                        b"\nContent-Type: message/rfc822\n\n",
                        b"=?utf-8?B?",
                        b"(((((",
                        b"\"\\",
                        b"\n\n",
                        b"; filename*0*=",
                        b"\n\t",
                    ],
                )
            }
        };
        check_message(&raw, rng);
    });
}

/// Nesting far deeper than any parser limit: 10,000 multiparts, 10,000
/// message/rfc822 parts, and deep comments, groups and quotes in header
/// fields. None may overflow the stack.
#[test]
fn deep_nesting() {
    let mut rng = Rng(DEFAULT_BASE);
    let depth = 10_000;
    let mut multipart = String::from("From: a@b.c\nMIME-Version: 1.0\n");
    for i in 0..depth {
        multipart += &format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n");
    }
    multipart += "\ntext\n";
    for i in (0..depth).rev() {
        multipart += &format!("--b{i}--\n");
    }
    check_message(multipart.as_bytes(), &mut rng);

    let mut rfc822 = String::new();
    for _ in 0..depth {
        rfc822 += "From: a@b.c\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\n";
    }
    rfc822 += "text\n";
    check_message(rfc822.as_bytes(), &mut rng);

    let deep = |open: &str, close: &str| format!("{}{}", open.repeat(50_000), close.repeat(50_000));
    for value in [
        deep("(", ")"),
        deep("(", ""),
        deep("\"\\", ""),
        deep("g:", ";"),
        deep("<", ">"),
        deep("=?utf-8?B?", "?="),
        format!("a@b.c {}", deep("(x ", "")),
    ] {
        for field in [
            "From",
            "To",
            "Subject",
            "Content-Type",
            "Message-ID",
            "Return-Path",
        ] {
            let mut msg = format!("{field}: {value}\nMIME-Version: 1.0\n").into_bytes();
            msg.extend_from_slice(b"Content-Type: message/rfc822\n\n");
            msg.extend_from_slice(format!("{field}: {value}\n\nbody\n").as_bytes());
            check_message(&msg, &mut rng);
        }
    }
}

/// Every parser over the same large input of random bytes: bounded time
/// and memory, and bounded warnings.
#[test]
fn large_random_inputs() {
    let mut rng = Rng(DEFAULT_BASE ^ 1);
    let len = env_u64("FUZZ_LARGE_BYTES").unwrap_or(1 << 20) as usize;
    let big: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let mut text_like = big.clone();
    for b in text_like.iter_mut() {
        if *b > 0xf0 {
            *b = b'\n';
        }
    }
    for input in [&big, &text_like] {
        let _ = name::parse(input, b':');
        let mut with_header = b"3 V1 N1\n".to_vec();
        with_header.extend_from_slice(input);
        let list = uidlist::parse(&with_header).expect("the header is valid");
        assert!(list.warnings.len() <= uidlist::MAX_EXAMPLES);
        let (_, ignored) = Keywords::parse_counted(input);
        assert!(ignored.examples.len() <= keywords::MAX_EXAMPLES);
        for subs in [
            subscriptions::parse_dovecot(input, '/', false),
            subscriptions::parse_courier(input, '/', true),
        ] {
            assert!(subs.names.is_empty());
            assert!(subs.not_subscriptions.is_some());
            assert!(subs.skipped.len() <= subscriptions::MAX_EXAMPLES);
        }
        let _ = quota::parse(input);
        let _ = mutf7::decode(input);
        let _ = folders::classify_dir(input);
        check_message(input, &mut rng);
    }
}
