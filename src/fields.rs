//! Fields of a registration record that this module does not use itself.
//!
//! Other modules put them there: a `cloud_notify/registration` handler may
//! set anything on `push_info` (prosody-modules' `mod_cloud_notify_encrypted`
//! sets `encryption = { algorithm, key_base64 }`, `mod_cloud_notify_filters`
//! sets `muted_jids = { [jid] = true }` and `groupchat_rules = { [room] = {
//! when, nick } }`). They are stored with the record, read back with it, and
//! handed to `cloud_notify/push` handlers as they were set: strings (as
//! bytes: nothing is re-encoded), numbers, booleans and tables nested to
//! [`MAX_DEPTH`], in at most [`MAX_BYTES`] per record when handlers set them,
//! [`MAX_STORED_BYTES`] when a record is read back (another module version,
//! such as the reference, may have stored more).

/// Deepest nesting of tables kept (a field's value is depth 1).
pub const MAX_DEPTH: usize = 16;
/// Largest total size, in bytes, of the other fields `cloud_notify/registration`
/// handlers may set on a record (see [`Field::size`]): about 800 muted JIDs.
pub const MAX_BYTES: usize = 32 * 1024;
/// Largest total size of a stored record's other fields that is kept when
/// it is read back; past it the registration is kept without them (logged).
pub const MAX_STORED_BYTES: usize = 1024 * 1024;
/// What one key or value costs beyond its text, in [`Field::size`]: an
/// empty table or a `true` is not free.
pub const ENTRY_COST: usize = 8;

/// A table key: Lua tables as the store keeps them have string or integer keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// A string key (its bytes, as Lua has them).
    Str(Vec<u8>),
    /// An integer key (array parts).
    Int(i64),
}

/// A value of another module's field.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A string (its bytes, as Lua has them).
    Str(Vec<u8>),
    /// An integer (kept apart from floats, as Lua 5.4 does).
    Int(i64),
    /// A float.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A table, its pairs in the order they were read.
    Table(Vec<(Key, Field)>),
}

/// Why a record's other fields were refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Tables nested deeper than [`MAX_DEPTH`] (or a table inside itself).
    TooDeep,
    /// More than the bound's bytes in all.
    TooLarge,
    /// A value that can't be stored (a function, a userdata …), at this key.
    NotData(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooDeep => write!(f, "tables nested deeper than {MAX_DEPTH}"),
            Refused::TooLarge => write!(f, "other fields too large"),
            Refused::NotData(key) => write!(f, "field '{key}' holds a value that can't be stored"),
        }
    }
}

impl Key {
    /// Bytes this key counts for.
    pub fn size(&self) -> usize {
        ENTRY_COST
            + match self {
                Key::Str(s) => s.len(),
                Key::Int(_) => 0,
            }
    }
}

impl Field {
    /// Bytes this value counts for: its text, plus [`ENTRY_COST`] for it
    /// and for each key and value inside it.
    pub fn size(&self) -> usize {
        ENTRY_COST
            + match self {
                Field::Str(s) => s.len(),
                Field::Int(_) | Field::Num(_) | Field::Bool(_) => 0,
                Field::Table(pairs) => pairs.iter().map(|(k, v)| k.size() + v.size()).sum(),
            }
    }

    /// How deep its tables go: 0 for a scalar, 1 for a table of scalars.
    pub fn depth(&self) -> usize {
        match self {
            Field::Table(pairs) => 1 + pairs.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// A running check of the bounds while a record's fields are read, so that
/// reading stops as soon as one is passed (a huge table is never copied).
#[derive(Debug)]
pub struct Budget {
    used: usize,
    max: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(MAX_BYTES)
    }
}

impl Budget {
    /// A budget of `max` bytes ([`MAX_BYTES`] or [`MAX_STORED_BYTES`]).
    pub fn new(max: usize) -> Self {
        Budget { used: 0, max }
    }

    /// Counts `bytes` more; `Err` once the total passes the budget.
    pub fn spend(&mut self, bytes: usize) -> Result<(), Refused> {
        self.used += bytes;
        if self.used > self.max {
            Err(Refused::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Bytes counted so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// `Err` if a table at `depth` (a field's value is 1) is too deep:
    /// the same rule as [`Field::depth`] ≤ [`MAX_DEPTH`].
    pub fn enter(depth: usize) -> Result<(), Refused> {
        if depth > MAX_DEPTH {
            Err(Refused::TooDeep)
        } else {
            Ok(())
        }
    }
}

/// Checks a record's other fields against the bounds, as a whole.
pub fn check(fields: &[(String, Field)]) -> Result<(), Refused> {
    let mut budget = Budget::default();
    for (k, v) in fields {
        if v.depth() > MAX_DEPTH {
            return Err(Refused::TooDeep);
        }
        budget.spend(ENTRY_COST + k.len() + v.size())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mod_cloud_notify_filters sets on `push_info`.
    fn filters() -> Vec<(String, Field)> {
        vec![
            (
                "muted_jids".into(),
                Field::Table(vec![(
                    Key::Str(b"spam@example.org".to_vec()),
                    Field::Bool(true),
                )]),
            ),
            (
                "groupchat_rules".into(),
                Field::Table(vec![(
                    Key::Str(b"room@muc.example.org".to_vec()),
                    Field::Table(vec![
                        (
                            Key::Str(b"when".to_vec()),
                            Field::Str(b"mentioned".to_vec()),
                        ),
                        (Key::Str(b"nick".to_vec()), Field::Str(b"romeo".to_vec())),
                    ]),
                )]),
            ),
            ("filter_unknown".into(), Field::Bool(true)),
        ]
    }

    #[test]
    fn extension_fields_fit() {
        let f = filters();
        assert_eq!(check(&f), Ok(()));
        assert_eq!(f[1].1.depth(), 2);
        assert_eq!(f[2].1.depth(), 0);
    }

    #[test]
    fn size_counts_every_entry_not_just_text() {
        let empty = Field::Table(vec![]);
        assert_eq!(empty.size(), ENTRY_COST);
        // Many empty tables cost bytes even with no text at all.
        let many = Field::Table(
            (0..(MAX_BYTES / (2 * ENTRY_COST) + 1) as i64)
                .map(|i| (Key::Int(i), Field::Table(vec![])))
                .collect(),
        );
        assert_eq!(check(&[("x".into(), many)]), Err(Refused::TooLarge));
    }

    #[test]
    fn too_large_and_too_deep_are_refused() {
        let big = Field::Str(vec![b'k'; MAX_BYTES]);
        assert_eq!(check(&[("key".into(), big)]), Err(Refused::TooLarge));
        let mut deep = Field::Bool(true);
        for _ in 0..MAX_DEPTH {
            deep = Field::Table(vec![(Key::Int(1), deep)]);
        }
        // Tables MAX_DEPTH deep holding a scalar: the reader's limit too.
        assert_eq!(deep.depth(), MAX_DEPTH);
        assert_eq!(check(&[("d".into(), deep.clone())]), Ok(()));
        let deeper = Field::Table(vec![(Key::Int(1), deep)]);
        assert_eq!(check(&[("d".into(), deeper)]), Err(Refused::TooDeep));
    }

    #[test]
    fn budget_stops_early() {
        let mut b = Budget::default();
        assert!(b.spend(MAX_BYTES).is_ok());
        assert_eq!(b.spend(1), Err(Refused::TooLarge));
        assert!(Budget::enter(MAX_DEPTH).is_ok());
        assert_eq!(Budget::enter(MAX_DEPTH + 1), Err(Refused::TooDeep));
    }
}
