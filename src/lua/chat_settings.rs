//! XEP-0492 chat notification settings, read from the user's XEP-0402
//! bookmarks ([`crate::chat_settings`]).
//!
//! Lua API (`conference`: a bookmark's `<conference xmlns='urn:xmpp:bookmarks:1'/>`
//! util.stanza object):
//!
//! | method | returns |
//! |---|---|
//! | `core:bookmarks_wanted(user[, any])` | whether to read the user's bookmarks now (not read since they were loaded; they have registrations here, or `any`) |
//! | `core:bookmarks(user, { { room, conference }, … })` | nothing: the user's bookmarks, as read (at most 2,000 looked at) |
//! | `core:bookmark(user, room, conference_or_nil)` | nothing: one bookmark published, or retracted (nil) |
//! | `core:chat_setting(user, room)` | `level, nick` (`"always"`, `"on-mention"`, `"never"`), or nil |

use super::convert::lua_to_element;
use super::object::Core;
use crate::chat_settings::{from_conference, RoomSetting, MAX_ROOMS, NS_BOOKMARKS};
use mlua::{Lua, Result, Table, UserDataMethods, Value};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method("bookmarks_wanted", bookmarks_wanted);
    m.add_method_mut("bookmarks", bookmarks);
    m.add_method_mut("bookmark", bookmark);
    m.add_method("chat_setting", chat_setting);
}

/// What a `<conference/>` object says, if it is one (bounded conversion).
fn setting_of(conference: &Value) -> Option<RoomSetting> {
    let Value::Table(t) = conference else {
        return None;
    };
    let element = lua_to_element(t, NS_BOOKMARKS).ok()?;
    if !element.is("conference", NS_BOOKMARKS) {
        return None;
    }
    from_conference(&element)
}

fn bookmarks_wanted(_: &Lua, this: &Core, (user, any): (String, Option<bool>)) -> Result<bool> {
    Ok(this.service.bookmarks_wanted(&user, any.unwrap_or(false)))
}

fn bookmarks(_: &Lua, this: &mut Core, (user, items): (String, Table)) -> Result<()> {
    let mut rooms = Vec::new();
    for entry in items.sequence_values::<Table>().take(2 * MAX_ROOMS) {
        let entry = entry?;
        let Some(room) = entry.raw_get::<Option<String>>(1)? else {
            continue;
        };
        rooms.push((room, setting_of(&entry.raw_get::<Value>(2)?)));
    }
    this.service.bookmarks_read(&user, rooms);
    Ok(())
}

fn bookmark(
    _: &Lua,
    this: &mut Core,
    (user, room, conference): (String, String, Value),
) -> Result<()> {
    let setting = match conference {
        Value::Nil => None,
        conference => Some(setting_of(&conference)),
    };
    match setting {
        // Published: with or without a setting (without: as none).
        Some(s) => this.service.bookmark_changed(&user, &room, s),
        None => this.service.bookmark_changed(&user, &room, None),
    }
    Ok(())
}

fn chat_setting(
    _: &Lua,
    this: &Core,
    (user, room): (String, String),
) -> Result<(Option<&'static str>, Option<String>)> {
    Ok(match this.service.chat_setting(&user, &room) {
        Some(s) => (Some(s.level.name()), s.nick.as_deref().map(str::to_owned)),
        None => (None, None),
    })
}
