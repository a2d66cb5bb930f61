//! Fields of a registration record that this module does not use itself.
//!
//! Other modules put them there: a `cloud_notify/registration` handler may
//! set anything on `push_info` (prosody-modules' `mod_cloud_notify_encrypted`
//! sets `encryption = { algorithm, key_base64 }`, `mod_cloud_notify_filters`
//! sets `muted_jids = { [jid] = true }` and `groupchat_rules = { [room] = {
//! when, nick } }`). They are stored with the record, read back with it, and
//! handed to `cloud_notify/push` handlers as they were set: strings,
//! numbers, booleans and tables nested to [`MAX_DEPTH`], in at most
//! [`MAX_BYTES`] per record.

/// Deepest nesting of tables kept (a field's value is depth 1).
pub const MAX_DEPTH: usize = 16;
/// Largest total size, in bytes, of a record's other fields (see [`Field::size`]).
pub const MAX_BYTES: usize = 16 * 1024;
/// What one key or value costs beyond its text, in [`Field::size`]: an
/// empty table or a `true` is not free.
pub const ENTRY_COST: usize = 8;

/// A table key: Lua tables as the store keeps them have string or integer keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// A string key.
    Str(String),
    /// An integer key (array parts).
    Int(i64),
}

/// A value of another module's field.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A string.
    Str(String),
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
    /// More than [`MAX_BYTES`] in all.
    TooLarge,
    /// A value that can't be stored (a function, a userdata …), at this key.
    NotData(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooDeep => write!(f, "tables nested deeper than {MAX_DEPTH}"),
            Refused::TooLarge => write!(f, "other fields larger than {MAX_BYTES} bytes"),
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

    /// How deep its tables go (a scalar is 1).
    pub fn depth(&self) -> usize {
        match self {
            Field::Table(pairs) => 1 + pairs.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 1,
        }
    }
}

/// A running check of the bounds while a record's fields are read, so that
/// reading stops as soon as one is passed (a huge table is never copied).
#[derive(Debug, Default)]
pub struct Budget {
    used: usize,
}

impl Budget {
    /// Counts `bytes` more; `Err` once the total passes [`MAX_BYTES`].
    pub fn spend(&mut self, bytes: usize) -> Result<(), Refused> {
        self.used += bytes;
        if self.used > MAX_BYTES {
            Err(Refused::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Bytes counted so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// `Err` if a table at `depth` (a field's value is 1) is too deep.
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
                    Key::Str("spam@example.org".into()),
                    Field::Bool(true),
                )]),
            ),
            (
                "groupchat_rules".into(),
                Field::Table(vec![(
                    Key::Str("room@muc.example.org".into()),
                    Field::Table(vec![
                        (Key::Str("when".into()), Field::Str("mentioned".into())),
                        (Key::Str("nick".into()), Field::Str("romeo".into())),
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
        assert_eq!(f[1].1.depth(), 3);
        assert_eq!(f[2].1.depth(), 1);
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
        let big = Field::Str("k".repeat(MAX_BYTES));
        assert_eq!(check(&[("key".into(), big)]), Err(Refused::TooLarge));
        let mut deep = Field::Bool(true);
        for _ in 0..MAX_DEPTH {
            deep = Field::Table(vec![(Key::Int(1), deep)]);
        }
        assert_eq!(deep.depth(), MAX_DEPTH + 1);
        assert_eq!(check(&[("d".into(), deep)]), Err(Refused::TooDeep));
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
