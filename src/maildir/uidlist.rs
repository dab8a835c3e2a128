//! The UID lists of Dovecot (`dovecot-uidlist`) and Courier
//! (`courierimapuiddb`): which IMAP UID each message base name has.
//!
//! Maildir itself has no UIDs, so the IMAP server keeps them in a side file.
//! A watcher that wants to report events with the UIDs an IMAP client sees
//! has to read that file, without taking the server's lock, while the server
//! may be appending to it. The rules here follow `maildir_uidlist_next()` and
//! `maildir_uidlist_read_header()` in dovecot/core
//! `src/lib-storage/index/maildir/maildir-uidlist.c`, with one deliberate
//! difference: Dovecot stops reading at the first bad record line and
//! rebuilds the file under its lock. A reader cannot rebuild anything, so it
//! drops the bad records, keeps the rest and counts what it dropped in
//! [`UidList::dropped`].
//!
//! # Damaged and hostile files
//!
//! The file is written by the mailbox's user, so it may hold anything. The
//! result still guarantees **at most one base name per UID and one UID per
//! base name**, with UIDs strictly increasing in [`UidList::records`]:
//!
//! | record | outcome | counted in [`Dropped`] |
//! |---|---|---|
//! | not `<uid> … :<name>`, empty name, name with `/` | dropped | `unparsable` |
//! | UID 0 or ≥ 4294967295 (Dovecot: "UID too high") | dropped | `uid_out_of_range` |
//! | UID already used by a kept record | dropped, the first record stays | `duplicate_uid` |
//! | UID below the highest kept UID (Dovecot: "UIDs not ordered") | dropped, the earlier records stay | `out_of_order` |
//! | base name already listed with a lower UID | the **earlier** record is dropped, the later one stays | `duplicate_name` |
//!
//! The last row is Dovecot's own reading rule (`maildir_uidlist_next()`:
//! "Duplicate file entry", the old UID is deleted and the new record
//! replaces it: an expunged file that came back gets a new UID). The other
//! rows keep the first record where Dovecot would stop reading.
//!
//! A message whose record was dropped has no server UID. The caller treats
//! it like a file Dovecot has not named yet: UID 0, the folder stays
//! pending and is read again until a later `dovecot-uidlist` names it.
//!
//! [`UidList::warnings`] keeps only the first [`MAX_EXAMPLES`] problems (with
//! names cut to [`EXAMPLE_NAME_MAX`] bytes), so a file of 10 MB of junk gives
//! a few short strings and one set of counts, never one string per line: the
//! caller logs one line per file with [`Dropped`]'s counts and the examples.
//!
//! Version 3 (Dovecot 1.1 and later):
//!
//! ```text
//! 3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//! 25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394
//! 25017 W2481 :1276533073.M242911P3632.kurkku
//! ```
//!
//! Version 1 (Courier's `courierimapuiddb` and Dovecot before 1.1):
//!
//! ```text
//! 1 1275660208 25022
//! 25006 1276528487.M364837P9451.kurkku
//! ```

use std::collections::HashMap;
use std::fmt;

/// How many problems [`UidList::warnings`] keeps as examples.
pub const MAX_EXAMPLES: usize = 5;

/// How many bytes of a name an example shows before it is cut with `…`.
pub const EXAMPLE_NAME_MAX: usize = 64;

/// The records [`parse`] dropped, by reason (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Records whose UID a kept record already has; the first one stays.
    pub duplicate_uid: usize,
    /// Earlier records of a base name that a later record lists again with
    /// a higher UID; the later one stays, as in Dovecot.
    pub duplicate_name: usize,
    /// Records whose UID is below the highest UID kept so far (and is no
    /// kept record's UID).
    pub out_of_order: usize,
    /// Records whose UID is 0 or at least 4294967295 (2^32 - 1, which
    /// Dovecot reserves), including numbers that do not fit in 32 bits.
    pub uid_out_of_range: usize,
    /// Lines that are no record: no UID, no space after it, no name, a
    /// name with `/`, an empty line.
    pub unparsable: usize,
}

impl Dropped {
    /// Returns how many records were dropped in all.
    pub fn total(&self) -> usize {
        self.duplicate_uid
            + self.duplicate_name
            + self.out_of_order
            + self.uid_out_of_range
            + self.unparsable
    }

    /// Returns true if nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// `3 duplicate UID, 1 out-of-order UID`: the non-zero counts, for one log
/// line; `none` when nothing was dropped.
impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            (self.duplicate_uid, "duplicate UID"),
            (self.duplicate_name, "duplicate name"),
            (self.out_of_order, "out-of-order UID"),
            (self.uid_out_of_range, "UID out of range"),
            (self.unparsable, "unparsable line"),
        ];
        let mut first = true;
        for (count, what) in kinds.into_iter().filter(|&(n, _)| n > 0) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{count} {what}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A parsed UID list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidList {
    /// The format version: 1 (courierimapuiddb / old dovecot) or 3.
    pub version: u8,
    /// The IMAP UIDVALIDITY of the mailbox; never 0.
    pub uidvalidity: u32,
    /// The next UID as Dovecot computes it: max(header N, last record UID + 1).
    ///
    /// Dovecot appends records without rewriting the header, so the header
    /// alone falls behind; "last" here is the highest UID of any kept record.
    pub next_uid: u32,
    /// The mailbox GUID from the v3 header `G` field, as 32 lower-case hex
    /// digits; `None` for version 1 files, which have no GUID.
    pub guid: Option<String>,
    /// The records as (uid, base name) in file order, which is strictly
    /// increasing UID order. No UID and no base name appears twice.
    ///
    /// The name is cut at the first `:`, because files written before Dovecot
    /// 2.0.6 carry a stale `:2,<flags>` that says nothing about the current
    /// flags. Dovecot compares names the same way. When a name is listed
    /// twice (Dovecot appends a new record when an expunged file comes
    /// back), only the later record is kept, as in Dovecot.
    pub records: Vec<(u32, Vec<u8>)>,
    /// How many records were dropped, by reason: for one warning line per
    /// file.
    pub dropped: Dropped,
    /// Version 1 records kept although their UID is not below the header's
    /// next UID (Dovecot calls that corruption; the UID is still the one
    /// Courier gave the message). [`UidList::next_uid`] is raised past them.
    pub above_next_uid: usize,
    /// The first [`MAX_EXAMPLES`] problems, such as
    /// `"line 7: record without a name"`, as examples for the caller's log
    /// line; the counts are in [`UidList::dropped`] and
    /// [`UidList::above_next_uid`].
    pub warnings: Vec<String>,
}

impl UidList {
    /// Returns a map from base name to UID (names are unique in
    /// [`UidList::records`]).
    pub fn lookup_map(&self) -> HashMap<&[u8], u32> {
        self.records
            .iter()
            .map(|(uid, name)| (name.as_slice(), *uid))
            .collect()
    }

    /// Keeps `warning` if fewer than [`MAX_EXAMPLES`] are kept already.
    fn example(&mut self, warning: impl FnOnce() -> String) {
        if self.warnings.len() < MAX_EXAMPLES {
            self.warnings.push(warning());
        }
    }
}

/// Why a UID list could not be used at all.
///
/// Only problems with the header are errors: without a valid UIDVALIDITY no
/// UID in the file means anything, and Dovecot itself deletes and rebuilds
/// such a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    line: usize,
    reason: String,
}

impl ParseError {
    fn new(line: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            line,
            reason: reason.into(),
        }
    }

    /// Returns the 1-based number of the line at fault.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Returns what is wrong, without the line number.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses a `dovecot-uidlist` (version 3) or `courierimapuiddb` (version 1)
/// file.
///
/// The header must be valid: a known version, and a non-zero UIDVALIDITY and
/// next UID (`V` and `N` in version 3, plus a well-formed `G` if present).
/// Dovecot rejects the file otherwise, so a watcher should treat it as "no
/// UIDs known". An empty file, or one with only whitespace, is an error too.
///
/// Because Dovecot appends records in place, a last line without `\n` may be
/// half-written and is ignored without a warning; the next read will see it
/// whole. The header is the exception: it is only ever written by replacing
/// the file, so it is accepted without a `\n`. A `\r` before a `\n` is
/// stripped, as Dovecot's line reader does.
pub fn parse(bytes: &[u8]) -> Result<UidList, ParseError> {
    // Kept records; a slot is emptied when a later record takes its name.
    let mut slots: Vec<Option<(u32, &[u8])>> = Vec::new();
    let mut slot_by_name: HashMap<&[u8], usize> = HashMap::new();
    let mut parser = Parser::new();
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let (line, after) = (&rest[..end], &rest[end + 1..]);
        parser.line(line, &mut |uid, name| {
            let old = slot_by_name
                .insert(name, slots.len())
                .and_then(|old| slots.get_mut(old).and_then(Option::take))
                .map(|(u, _)| u);
            slots.push(Some((uid, name)));
            old
        });
        rest = after;
    }
    let mut list = parser.finish(rest)?;
    list.records = slots
        .into_iter()
        .flatten()
        .map(|(uid, name)| (uid, name.to_vec()))
        .collect();
    Ok(list)
}

/// [`parse`] a line at a time, for a reader that does not hold the whole
/// file: a UID list of a million messages is some 60 MB, and a scan needs
/// only the UIDs of the names it listed. Feed it each complete line
/// (without its `\n`), then [`Parser::finish`] with what followed the last
/// `\n`. Kept records are not collected: each goes to the caller as it is
/// read (see [`Parser::line`]), so [`UidList::records`] stays empty.
#[derive(Debug)]
pub struct Parser {
    /// After a valid header.
    list: Option<UidList>,
    header_error: Option<ParseError>,
    /// Every byte so far was whitespace.
    blank: bool,
    /// The number of the next line.
    number: usize,
    next_uid: u32,
    max_uid: u32,
    /// The UIDs of kept records, ascending (each is above the one before).
    kept_uids: Vec<u32>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new()
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            list: None,
            header_error: None,
            blank: true,
            number: 1,
            next_uid: 0,
            max_uid: 0,
            kept_uids: Vec::new(),
        }
    }

    /// Reads one complete line. `kept(uid, name)` is called for each record
    /// kept, in file order; it returns the UID of an earlier kept record of
    /// the same name, if there is one (that earlier record is dropped: a
    /// later record of a name wins, as in Dovecot).
    pub fn line<'b>(&mut self, line: &'b [u8], kept: &mut dyn FnMut(u32, &'b [u8]) -> Option<u32>) {
        self.blank &= line.iter().all(u8::is_ascii_whitespace);
        let number = self.number;
        self.number += 1;
        if number == 1 {
            match parse_header(strip_cr(line)) {
                Ok(header) => self.start(header),
                Err(reason) => self.header_error = Some(ParseError::new(1, reason)),
            }
            return;
        }
        let Some(list) = &mut self.list else {
            return;
        };
        let (uid, name) = match parse_record(strip_cr(line), list.version) {
            Ok(record) => record,
            Err(bad) => {
                match bad {
                    BadRecord::OutOfRange(_) => list.dropped.uid_out_of_range += 1,
                    BadRecord::Unparsable(_) => list.dropped.unparsable += 1,
                }
                list.example(|| format!("line {number}: {bad}"));
                return;
            }
        };
        let max_uid = self.max_uid;
        if uid <= max_uid {
            if self.kept_uids.binary_search(&uid).is_ok() {
                list.dropped.duplicate_uid += 1;
                list.example(|| {
                    format!(
                        "line {number}: UID {uid} listed again (for {}); dropped",
                        show(name)
                    )
                });
            } else {
                list.dropped.out_of_order += 1;
                list.example(|| {
                    format!(
                        "line {number}: UID {uid} is not above the previous UID {max_uid}; dropped"
                    )
                });
            }
            return;
        }
        if list.version == 1 && uid >= self.next_uid {
            list.above_next_uid += 1;
            let next = self.next_uid;
            list.example(|| {
                format!("line {number}: UID {uid} is not below the header's next UID {next}")
            });
        }
        if let Some(old_uid) = kept(uid, name) {
            list.dropped.duplicate_name += 1;
            list.example(|| {
                format!(
                    "line {number}: {} listed again (UID {old_uid} -> {uid}); the earlier record is dropped",
                    show(name)
                )
            });
        }
        self.kept_uids.push(uid);
        self.max_uid = uid;
    }

    fn start(&mut self, header: Header) {
        self.next_uid = header.next_uid;
        self.list = Some(UidList {
            version: header.version,
            uidvalidity: header.uidvalidity,
            next_uid: header.next_uid,
            guid: header.guid,
            records: Vec::new(),
            dropped: Dropped::default(),
            above_next_uid: 0,
            warnings: Vec::new(),
        });
    }

    /// Ends the file: `partial` is what followed the last `\n` (a record
    /// being appended, ignored; or the header of a file of one line).
    pub fn finish(mut self, partial: &[u8]) -> Result<UidList, ParseError> {
        self.blank &= partial.iter().all(u8::is_ascii_whitespace);
        if self.blank {
            return Err(ParseError::new(1, "empty"));
        }
        if let Some(e) = self.header_error {
            return Err(e);
        }
        if self.number == 1 {
            // No complete line: the header is written only by replacing
            // the file, so it is accepted without its `\n`.
            let header =
                parse_header(strip_cr(partial)).map_err(|reason| ParseError::new(1, reason))?;
            self.start(header);
        }
        let mut list = self.list.ok_or_else(|| ParseError::new(1, "empty"))?;
        list.next_uid = list.next_uid.max(self.max_uid.saturating_add(1));
        Ok(list)
    }
}

/// Shows a name in a warning: lossy UTF-8 of at most [`EXAMPLE_NAME_MAX`]
/// bytes, with control characters escaped (`\r`, `\u{1}`) so that a name
/// cannot forge a log line, cut to 2 × [`EXAMPLE_NAME_MAX`] characters.
fn show(name: &[u8]) -> String {
    let head = name.get(..EXAMPLE_NAME_MAX).unwrap_or(name);
    let escaped: String = String::from_utf8_lossy(head).escape_debug().collect();
    let mut shown: String = escaped.chars().take(2 * EXAMPLE_NAME_MAX).collect();
    if name.len() > head.len() || shown.len() < escaped.len() {
        shown.push('…');
    }
    shown
}

/// Why a line is not a usable record.
#[derive(Debug)]
enum BadRecord {
    /// The UID is 0 or does not fit below 2^32 - 1.
    OutOfRange(String),
    /// Anything else.
    Unparsable(String),
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRecord::OutOfRange(reason) | BadRecord::Unparsable(reason) => f.write_str(reason),
        }
    }
}

/// The fields of a valid header line.
struct Header {
    version: u8,
    uidvalidity: u32,
    next_uid: u32,
    guid: Option<String>,
}

/// Parses the first line: `1 <uidvalidity> <nextuid>` or
/// `3 <key><value> …` with keys in any order.
fn parse_header(line: &[u8]) -> Result<Header, String> {
    // Dovecot reads the version as one digit followed by a space.
    let [version, b' ', fields @ ..] = line else {
        return Err("invalid header (no version number)".to_owned());
    };
    if !version.is_ascii_digit() {
        return Err("invalid header (no version number)".to_owned());
    }
    let version = version - b'0';
    let mut uidvalidity = None;
    let mut next_uid = None;
    let mut guid = None;
    match version {
        1 => {
            let mut fields = fields
                .split(u8::is_ascii_whitespace)
                .filter(|f| !f.is_empty());
            uidvalidity = fields.next().and_then(parse_u32);
            next_uid = fields.next().and_then(parse_u32);
            if uidvalidity.is_none() || next_uid.is_none() {
                return Err("invalid version 1 header".to_owned());
            }
        }
        3 => {
            for field in fields.split(|&b| b == b' ').filter(|f| !f.is_empty()) {
                let Some((&key, value)) = field.split_first() else {
                    continue;
                };
                let shown = || show(value);
                match key {
                    b'V' => {
                        let v = parse_u32(value);
                        uidvalidity =
                            Some(v.ok_or_else(|| format!("invalid UIDVALIDITY {:?}", shown()))?);
                    }
                    b'N' => {
                        let n = parse_u32(value);
                        next_uid =
                            Some(n.ok_or_else(|| format!("invalid next UID {:?}", shown()))?);
                    }
                    b'G' => {
                        if value.len() != 32 || !value.iter().all(u8::is_ascii_hexdigit) {
                            return Err(format!("invalid mailbox GUID {:?}", shown()));
                        }
                        guid = Some(String::from_utf8_lossy(value).to_ascii_lowercase());
                    }
                    // P (POP3 UIDL format) and future fields.
                    _ => {}
                }
            }
        }
        _ => return Err(format!("unsupported version {version}")),
    }
    let uidvalidity = match uidvalidity {
        None => return Err("no UIDVALIDITY (V)".to_owned()),
        Some(0) => return Err("UIDVALIDITY is 0".to_owned()),
        Some(v) => v,
    };
    let next_uid = match next_uid {
        None => return Err("no next UID (N)".to_owned()),
        Some(0) => return Err("next UID is 0".to_owned()),
        Some(n) => n,
    };
    Ok(Header {
        version,
        uidvalidity,
        next_uid,
        guid,
    })
}

/// Parses one record line into a UID and a base name, or says why it is not
/// a usable record.
fn parse_record(line: &[u8], version: u8) -> Result<(u32, &[u8]), BadRecord> {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    let (uid, rest) = line.split_at(digits);
    if uid.is_empty() {
        return Err(BadRecord::Unparsable("record without a UID".to_owned()));
    }
    let uid = match parse_u32(uid) {
        None | Some(u32::MAX) => {
            return Err(BadRecord::OutOfRange(format!(
                "UID {} too large",
                show(uid)
            )));
        }
        Some(0) => return Err(BadRecord::OutOfRange("record with UID 0".to_owned())),
        Some(uid) => uid,
    };
    let Some(mut rest) = rest.strip_prefix(b" ") else {
        return Err(BadRecord::Unparsable(format!(
            "UID {uid} not followed by a space"
        )));
    };
    if version == 3 {
        // Skip `<KEY><value>` extension fields up to the one that starts
        // with ':', which is the name.
        rest = loop {
            rest = trim_spaces(rest);
            match rest.split_first() {
                None => return Err(BadRecord::Unparsable("record without a name".to_owned())),
                Some((b':', name)) => break name,
                Some(_) => {
                    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
                    rest = rest.get(end..).unwrap_or_default();
                }
            }
        };
    } else {
        rest = trim_spaces(rest);
    }
    let name = rest.split(|&b| b == b':').next().unwrap_or_default();
    if name.is_empty() {
        return Err(BadRecord::Unparsable("record without a name".to_owned()));
    }
    if name.contains(&b'/') {
        return Err(BadRecord::Unparsable(format!(
            "file name with '/': {}",
            show(name)
        )));
    }
    Ok((uid, name))
}

/// Parses a non-empty string of ASCII digits that fits in a `u32`, as
/// Dovecot's `str_to_uint()` does.
fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// Drops the `\r` of a CRLF line ending.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Drops leading spaces.
fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let spaces = bytes.iter().take_while(|&&b| b == b' ').count();
    bytes.get(spaces..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "3085f01b7f11094c501100008c4a11c1";

    /// A version 3 header with UIDVALIDITY 42 and next UID 1.
    const HDR: &str = "3 V42 N1 G3085f01b7f11094c501100008c4a11c1\n";

    /// Builds the expected list of a version 3 file, with nothing dropped.
    fn v3(uidvalidity: u32, next_uid: u32, records: &[(u32, &str)], warnings: &[&str]) -> UidList {
        UidList {
            version: 3,
            uidvalidity,
            next_uid,
            guid: Some(GUID.to_owned()),
            records: records.iter().map(|&(u, n)| (u, n.into())).collect(),
            dropped: Dropped::default(),
            above_next_uid: 0,
            warnings: warnings.iter().map(|&w| w.to_owned()).collect(),
        }
    }

    /// Builds the expected list of a version 3 file with dropped records.
    fn v3d(next_uid: u32, records: &[(u32, &str)], dropped: Dropped, warnings: &[&str]) -> UidList {
        UidList {
            dropped,
            ..v3(42, next_uid, records, warnings)
        }
    }

    /// Counts of dropped records: (duplicate UID, duplicate name, out of
    /// order, out of range, unparsable).
    fn d(counts: (usize, usize, usize, usize, usize)) -> Dropped {
        let (duplicate_uid, duplicate_name, out_of_order, uid_out_of_range, unparsable) = counts;
        Dropped {
            duplicate_uid,
            duplicate_name,
            out_of_order,
            uid_out_of_range,
            unparsable,
        }
    }

    /// Builds the expected list of a version 1 file.
    fn v1(uidvalidity: u32, next_uid: u32, records: &[(u32, &str)], warnings: &[&str]) -> UidList {
        UidList {
            version: 1,
            guid: None,
            ..v3(uidvalidity, next_uid, records, warnings)
        }
    }

    #[test]
    fn parse_valid_files() {
        #[rustfmt::skip]
        let rows: Vec<(String, UidList)> = vec![
            // The example from the Dovecot documentation, plus a G record.
            ("3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
              25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394\n\
              25017 W2481 :1276533073.M242911P3632.kurkku\n\
              25018 G1699999999.M5P7.host,S=10,W=11 :1700000001.M1P2.host,S=10,W=11\n".into(),
             v3(1275660208, 25022, &[
                 (25006, "1276528487.M364837P9451.kurkku,S=1355,W=1394"),
                 (25017, "1276533073.M242911P3632.kurkku"),
                 (25018, "1700000001.M1P2.host,S=10,W=11"),
             ], &[])),
            // Fields in another order, unknown header and record fields, upper-case GUID.
            ("3 G3085F01B7F11094C501100008C4A11C1 P%v.%u X N7 V42\n\
              3 S10 W11 P1abc O2 Zfuture  :1700000001.M1P2.host\n".into(),
             v3(42, 7, &[(3, "1700000001.M1P2.host")], &[])),
            // Records appended after the header was written: the next UID follows them.
            (format!("{HDR}4 :a\n5 :b\n9 :c\n"), v3(42, 10, &[(4, "a"), (5, "b"), (9, "c")], &[])),
            // Files from before Dovecot 2.0.6 carry a stale ":2,".
            (format!("{HDR}1 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,S\n\
                      2 :1276533073.M242911P3632.kurkku:2,\n"),
             v3(42, 3, &[
                 (1, "1276528487.M364837P9451.kurkku,S=1355,W=1394"),
                 (2, "1276533073.M242911P3632.kurkku"),
             ], &[])),
            // A half-written append is ignored, without a warning.
            (format!("{HDR}1 :a\n2 :1700000002.M"), v3(42, 2, &[(1, "a")], &[])),
            (format!("{HDR}1 :a\n2 :b"), v3(42, 2, &[(1, "a")], &[])),
            // Header only, with and without '\n' (the header is never appended).
            (HDR.into(), v3(42, 1, &[], &[])),
            (HDR.trim_end().into(), v3(42, 1, &[], &[])),
            // CRLF line endings.
            (format!("{}\r\n1 :a\r\n", HDR.trim_end()), v3(42, 2, &[(1, "a")], &[])),
            // Bad records are dropped and counted; the first five are examples; the good ones stay.
            (format!("{HDR}1 :a\n0 :zero\nx :no-uid\n2 W5\n3 :\n4 ::2,S\n5:glued\n6 :a/b\n\
                      4294967295 :max\n99999999999 :huge\n\n7 :b\n"),
             v3d(8, &[(1, "a"), (7, "b")], d((0, 0, 0, 3, 7)), &[
                 "line 3: record with UID 0",
                 "line 4: record without a UID",
                 "line 5: record without a name",
                 "line 6: record without a name",
                 "line 7: record without a name",
             ])),
        ];
        for (text, want) in rows {
            assert_eq!(parse(text.as_bytes()), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn conflicting_records() {
        #[rustfmt::skip]
        let rows: Vec<(String, UidList)> = vec![
            // Out of order and a repeated UID: the first record stays.
            (format!("{HDR}5 :a\n3 :b\n5 :c\n8 :d\n"),
             v3d(9, &[(5, "a"), (8, "d")], d((1, 0, 1, 0, 0)), &[
                 "line 3: UID 3 is not above the previous UID 5; dropped",
                 "line 4: UID 5 listed again (for c); dropped",
             ])),
            // The same record twice: one stays.
            (format!("{HDR}5 :a\n5 :a\n"),
             v3d(6, &[(5, "a")], d((1, 0, 0, 0, 0)), &[
                 "line 3: UID 5 listed again (for a); dropped",
             ])),
            // A name listed again with a higher UID: the later record stays (Dovecot's rule).
            (format!("{HDR}1 :a\n2 :b\n3 :a\n"),
             v3d(4, &[(2, "b"), (3, "a")], d((0, 1, 0, 0, 0)), &[
                 "line 4: a listed again (UID 1 -> 3); the earlier record is dropped",
             ])),
            // ... three times: only the last one stays.
            (format!("{HDR}1 :a\n2 :a\n3 :a:2,S\n"),
             v3d(4, &[(3, "a")], d((0, 2, 0, 0, 0)), &[
                 "line 3: a listed again (UID 1 -> 2); the earlier record is dropped",
                 "line 4: a listed again (UID 2 -> 3); the earlier record is dropped",
             ])),
            // A dropped out-of-order record does not take its name from a kept one.
            (format!("{HDR}1 :a\n5 :b\n3 :a\n"),
             v3d(6, &[(1, "a"), (5, "b")], d((0, 0, 1, 0, 0)), &[
                 "line 4: UID 3 is not above the previous UID 5; dropped",
             ])),
            // UIDs out of range: 0, 2^32 - 1 (reserved), 2^32 and beyond.
            (format!("{HDR}0 :a\n4294967294 :b\n4294967295 :c\n4294967296 :d\n18446744073709551617 :e\n"),
             v3d(4294967295, &[(4294967294, "b")], d((0, 0, 0, 4, 0)), &[
                 "line 2: record with UID 0",
                 "line 4: UID 4294967295 too large",
                 "line 5: UID 4294967296 too large",
                 "line 6: UID 18446744073709551617 too large",
             ])),
            // A dropped record does not raise the next UID.
            (format!("{HDR}7 :a\n3 :b\n"),
             v3d(8, &[(7, "a")], d((0, 0, 1, 0, 0)), &[
                 "line 3: UID 3 is not above the previous UID 7; dropped",
             ])),
        ];
        for (text, want) in rows {
            assert_eq!(parse(text.as_bytes()), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn junk_gives_counts_not_one_warning_per_line() {
        // 40,000 bad lines and a name of 100 kB: five short examples and the counts.
        let mut file = HDR.as_bytes().to_vec();
        for i in 0..40_000u32 {
            file.extend_from_slice(format!("x{i} junk\n").as_bytes());
        }
        file.extend_from_slice(b"1 :");
        file.extend(std::iter::repeat_n(b'n', 100_000));
        file.extend_from_slice(b"/\n2 :ok\n1 :again\n");
        let list = parse(&file).expect("valid header");
        assert_eq!(list.records, vec![(2, b"ok".to_vec())]);
        assert_eq!(list.dropped, d((0, 0, 1, 0, 40_001)));
        assert_eq!(list.dropped.total(), 40_002);
        assert_eq!(list.warnings.len(), MAX_EXAMPLES);
        assert!(
            list.warnings.iter().all(|w| w.len() < 200),
            "{:?}",
            list.warnings
        );
        assert_eq!(
            list.dropped.to_string(),
            "1 out-of-order UID, 40001 unparsable line"
        );
        assert_eq!(Dropped::default().to_string(), "none");
        let long = parse(format!("{HDR}5 :a\n3 :{}\n", "x".repeat(500)).as_bytes()).unwrap();
        assert_eq!(
            long.warnings,
            ["line 3: UID 3 is not above the previous UID 5; dropped"]
        );
        let long = parse(format!("{HDR}1 :{0}\n2 :{0}\n", "x".repeat(500)).as_bytes()).unwrap();
        assert!(long.warnings[0].contains(&format!("{}… listed again", "x".repeat(64))));
        // Control characters in a name are escaped: no forged log lines.
        let cr = parse(format!("{HDR}1 :a\rb\x01\n2 :a\rb\x01\n").as_bytes()).unwrap();
        assert_eq!(
            cr.warnings,
            ["line 3: a\\rb\\u{1} listed again (UID 1 -> 2); the earlier record is dropped"]
        );
    }

    #[test]
    fn header_errors_are_short() {
        let err = parse(format!("3 V{} N1\n", "9".repeat(100_000)).as_bytes()).unwrap_err();
        assert!(err.reason().len() < 100, "{}", err.reason());
    }

    #[test]
    fn version1_files() {
        #[rustfmt::skip]
        let rows: Vec<(String, UidList)> = vec![
            // Courier's courierimapuiddb.
            ("1 1100000000 5\n\
              1 1100000001.12345_0.host\n\
              2 1100000002.M12P345V0000000000000803I00000000001F2A3B_0.host,S=2872\n\
              4   1100000004.4242_1.laptop:2,S\n".into(),
             v1(1100000000, 5, &[
                 (1, "1100000001.12345_0.host"),
                 (2, "1100000002.M12P345V0000000000000803I00000000001F2A3B_0.host,S=2872"),
                 (4, "1100000004.4242_1.laptop"),
             ], &[])),
            // Version 1 with a UID at or above the header's next UID: kept, counted.
            ("1 7 3\n3 a\n".into(),
             UidList {
                 above_next_uid: 1,
                 ..v1(7, 4, &[(3, "a")], &["line 2: UID 3 is not below the header's next UID 3"])
             }),
        ];
        for (text, want) in rows {
            assert_eq!(parse(text.as_bytes()), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn parse_errors() {
        #[rustfmt::skip]
        let rows: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"  \n\n\t\r\n", "empty"),
            (b"\n3 V42 N1\n", "invalid header (no version number)"),
            (b"3", "invalid header (no version number)"),
            (b"3\n1 :a\n", "invalid header (no version number)"),
            (b"31 V42 N1\n", "invalid header (no version number)"),
            (b"x V42 N1\n", "invalid header (no version number)"),
            (b"2 V42 N1\n", "unsupported version 2"),
            (b"4 V42 N1\n", "unsupported version 4"),
            (b"3 N1\n", "no UIDVALIDITY (V)"),
            (b"3 V0 N1\n", "UIDVALIDITY is 0"),
            (b"3 Vx N1\n", "invalid UIDVALIDITY \"x\""),
            (b"3 V N1\n", "invalid UIDVALIDITY \"\""),
            (b"3 V-1 N1\n", "invalid UIDVALIDITY \"-1\""),
            (b"3 V4294967296 N1\n", "invalid UIDVALIDITY \"4294967296\""),
            (b"3 V42\n", "no next UID (N)"),
            (b"3 V42 N0\n", "next UID is 0"),
            (b"3 V42 N1x\n", "invalid next UID \"1x\""),
            (b"3 V42 N1 Gxyz\n", "invalid mailbox GUID \"xyz\""),
            (b"3 V42 N1 G3085f01b7f11094c501100008c4a11c\n",
             "invalid mailbox GUID \"3085f01b7f11094c501100008c4a11c\""),
            (b"1 42\n", "invalid version 1 header"),
            (b"1 abc 5\n", "invalid version 1 header"),
            (b"1 0 5\n", "UIDVALIDITY is 0"),
            (b"1 42 0\n", "next UID is 0"),
        ];
        for &(text, reason) in rows {
            let err = parse(text).expect_err(&String::from_utf8_lossy(text));
            assert_eq!(err.reason(), reason, "{:?}", String::from_utf8_lossy(text));
            assert_eq!(err.line(), 1);
            assert_eq!(err.to_string(), format!("line 1: {reason}"));
        }
    }

    #[test]
    fn lookup_map_later_records_win() {
        let list = parse(b"3 V42 N1\n1 :a\n2 :b:2,S\n3 :a\n").expect("valid");
        assert_eq!(list.guid, None);
        let map = list.lookup_map();
        #[rustfmt::skip]
        let rows: &[(&[u8], Option<u32>)] = &[
            (b"a", Some(3)), (b"b", Some(2)), (b"b:2,S", None), (b"c", None),
        ];
        for &(name, uid) in rows {
            assert_eq!(
                map.get(name).copied(),
                uid,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn no_panic_on_random_files() {
        // A small linear congruential generator keeps the test free of
        // dependencies and reproducible.
        let alphabet: &[u8] = b"0139 :\nVNGWa\r/\xff";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            state >> 33
        };
        for _ in 0..20_000 {
            let mut file = HDR.as_bytes().to_vec();
            let len = next() % 40;
            for _ in 0..len {
                let pick = usize::try_from(next()).unwrap_or(0) % alphabet.len();
                file.push(alphabet.get(pick).copied().unwrap_or(b' '));
            }
            let _ = parse(&file);
            let _ = parse(file.get(HDR.len()..).unwrap_or_default());
        }
    }
}
