//! Unit tests of the binding, in a Lua 5.4 VM of their own (the system's
//! liblua5.4, `cargo test --features vm`): conversions, typed returns, the
//! raw reader and writer (with their stack-balance assertions on, as
//! this is a debug build), and the core object end to end.

use super::convert::{affiliations_of, error_of, references, strings_of};
use super::raw::read;
use super::replies::{Disabled, Planned, Reply};
use super::{exports, lua_to_element};
use crate::error::StanzaError;
use crate::facts::StanzaFacts;
use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Table, Value};

/// A minimal util.stanza: `stanza(name, attr)`, `:tag`, `:text`, `:up`,
/// as tables of the shape Prosody's have.
const STANZA: &str = r#"
local mt = {}; mt.__index = mt;
function mt:tag(name, attr)
    local child = setmetatable({ name = name, attr = attr or {}, tags = {} }, mt);
    local top = self.last or self;
    top[#top+1] = child; top.tags[#top.tags+1] = child;
    child.parent = top; self.last = child;
    return self;
end
function mt:text(t) local top = self.last or self; top[#top+1] = t; return self; end
function mt:up() local top = self.last or self; self.last = top.parent ~= self and top.parent or nil; return self; end
local function stanza(name, attr) return setmetatable({ name = name, attr = attr or {}, tags = {} }, mt); end
return stanza, mt
"#;

fn vm() -> (Lua, Function, Table) {
    let lua = Lua::new();
    let (stanza, mt): (Function, Table) = lua.load(STANZA).eval().unwrap();
    (lua, stanza, mt)
}

/// A VM whose globals are the library (`cloud_notify`), util.stanza's
/// metatable (`stanza_mt`) and the constructor (`s`).
fn vm_with_library() -> Lua {
    let (lua, stanza, mt) = vm();
    let globals = lua.globals();
    globals.set("cloud_notify", exports(&lua).unwrap()).unwrap();
    globals.set("stanza_mt", mt).unwrap();
    globals.set("s", stanza).unwrap();
    lua
}

/// Builds a stanza with a Lua expression over `s` (the constructor).
fn build(lua: &Lua, stanza: &Function, code: &str) -> Table {
    lua.globals().set("s", stanza.clone()).unwrap();
    let t: Table = lua.load(format!("return {code}")).eval().unwrap();
    // (the builder's cursor is not part of a stanza)
    t.raw_set("last", Value::Nil).unwrap();
    t
}

fn values(lua: &Lua, v: impl IntoLuaMulti) -> Vec<Value> {
    let multi: MultiValue = v.into_lua_multi(lua).unwrap();
    multi.into_iter().collect()
}

#[test]
fn replies_keep_their_conventions() {
    let (lua, _, _) = vm();
    let refused = values(
        &lua,
        Reply::<bool>::Refused(StanzaError::bad_request("Missing jid")),
    );
    assert!(refused[0].is_nil());
    assert_eq!(refused[1].to_string().unwrap(), "modify");
    assert_eq!(refused[2].to_string().unwrap(), "bad-request");
    assert_eq!(refused[3].to_string().unwrap(), "Missing jid");
    assert_eq!(values(&lua, Reply::Done(true)).len(), 1);
    assert!(values(&lua, Planned(None)).is_empty());
    let nothing = values(&lua, Disabled::Nothing);
    let Value::Table(nothing) = &nothing[0] else {
        panic!("a table")
    };
    assert!(
        nothing.raw_get::<Value>("held").unwrap().is_nil(),
        "nothing to write"
    );
    let removed: mlua::Table = nothing.raw_get("removed").unwrap();
    assert!(removed.is_empty());
}

#[test]
fn reads_errors_references_and_affiliations() {
    let (lua, stanza, _) = vm();
    let error = build(
        &lua,
        &stanza,
        r#"s("iq", { type = "error", id = "p1" }):tag("error", { type = "made-up" })
            :tag("text", { xmlns = "urn:ietf:params:xml:ns:xmpp-stanzas" }):up()
            :tag("item-not-found", { xmlns = "urn:ietf:params:xml:ns:xmpp-stanzas" }):up():up()"#,
    );
    let (type_, condition) = error_of(&error).unwrap();
    // As sent (the first child in the stanzas namespace): the core judges.
    assert_eq!(type_.as_deref(), Some("made-up"));
    assert_eq!(condition.as_deref(), Some("text"));
    let mentions = build(
        &lua,
        &stanza,
        r#"(function()
            local m = s("message", { type = "groupchat" });
            for i = 1, 40 do
                m:tag("reference", { xmlns = "urn:xmpp:reference:0", type = "mention", begin = "0", ["end"] = tostring(i) }):up();
            end
            m:tag("reference", { xmlns = "urn:example" }):up();
            return m;
        end)()"#,
    );
    let refs = references(&mentions).unwrap();
    assert_eq!(refs.len(), crate::muc::MAX_REFERENCES);
    assert_eq!(refs[0].end.as_deref(), Some("1"));
    let event = build(
        &lua,
        &stanza,
        r#"s("message", { from = "push.example" })
            :tag("event", { xmlns = "http://jabber.org/protocol/pubsub#event" })
            :tag("affiliations", { node = "n1" })
            :tag("affiliation", { jid = "romeo@example.com", affiliation = "none" }):up():up():up()"#,
    );
    let (node, affs) = affiliations_of(&event).unwrap().unwrap();
    assert_eq!(node.as_deref(), Some("n1"));
    assert_eq!(affs, vec![("romeo@example.com".into(), "none".into())]);
    let services: Table = lua
        .load(r#"return { ["a<1"] = {}, ["b<2"] = true, ["c<3"] = false, "d<4" }"#)
        .eval()
        .unwrap();
    let mut ids = strings_of(Some(services)).unwrap().unwrap();
    ids.sort();
    assert_eq!(ids, ["a<1", "b<2", "d<4"]);
}

#[test]
fn the_raw_reader_finds_what_the_core_walk_finds() {
    let (lua, stanza, _) = vm();
    for code in [
        r#"s("message", { to = "romeo@example.com", from = "juliet@example.com/b", type = "chat", id = "m1" })
            :tag("body"):text("one "):text("two"):up()
            :tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "romeo@example.com", id = "a1" }):up()"#,
        r#"s("message", { from = "romeo@example.com" })
            :tag("received", { xmlns = "urn:xmpp:carbons:2" })
            :tag("forwarded", { xmlns = "urn:xmpp:forward:0" })
            :tag("message", { xmlns = "jabber:client", from = "juliet@example.com" })
            :tag("body"):text("inner"):up():up():up():up()"#,
        r#"s("message", {}):tag("propose", { xmlns = "urn:xmpp:jingle-message:0", id = "c1" }):up()
            :tag("encrypted", { xmlns = "urn:xmpp:omemo:2" }):up()"#,
        r#"s("presence", { from = "juliet@example.com/b", type = "subscribe" })"#,
    ] {
        let t = build(&lua, &stanza, code);
        let raw = read::stanza_facts(&lua, &t).unwrap();
        let parsed = StanzaFacts::from_element(&lua_to_element(&t, crate::NS_CLIENT).unwrap());
        assert_eq!(raw, parsed, "{code}");
    }
}

/// The core object through the module's exports: enable, load, an
/// offline message, the event it gives (its IQ the core's), the answer.
#[test]
fn the_core_object_end_to_end() {
    let lua = vm_with_library();
    let checked: bool = lua
        .load(
            r#"
        local core = cloud_notify.new("example.com", { push_notification_with_body = false }, stanza_mt, nil);
        assert(core:loaded("romeo") == false);
        assert(core:might_push("romeo") == true and core:has_push("romeo") == false);
        local pushes = core:offline("romeo", s("message", { to = "romeo@example.com", id = "x" }), 1);
        assert(pushes.load == "romeo" and #pushes == 0, "not loaded: load them");
        core:load("romeo", nil);
        assert(core:might_push("romeo") == false);
        local iq = s("iq", { type = "set", id = "e1" })
            :tag("enable", { xmlns = "urn:xmpp:push:0", jid = "push.example", node = "n1" }):up();
        iq.last = nil;
        local who = { username = "romeo", host = "example.com", full_jid = "romeo@example.com/phone", resource = "phone" };
        local info, identifier = core:enable(who, iq, 1);
        assert(identifier == "push.example<n1", tostring(identifier));
        local plan = core:plan_enable("romeo", identifier, info);
        assert(plan.services[identifier].node == "n1" and next(plan.removed) == nil);
        assert(#core:commit("romeo", plan) == 0);
        assert(core:commit("romeo", plan)[1]:match("twice"), "adopted once");
        assert(core:has_push("romeo"));
        local msg = s("message", { to = "romeo@example.com", from = "juliet@example.com/b", type = "chat", id = "m1" })
            :tag("body"):text("secret"):up();
        msg.last = nil;
        local events = core:offline("romeo", msg, 2);
        assert(#events == 1);
        local event = events[1];
        assert(event.username == "romeo" and event.important == true and event.push_kind == "offline");
        assert(event.original_stanza == msg);
        assert(event.push_summary["last-message-body"] == "New Message!");
        assert(event.notification_stanza.tags[1].tags[1].tags[1].tags[1] == event.notification_payload);
        assert(cloud_notify.check_push(event) == true);
        -- A missing <enable/> child: refused the XMPP way.
        local _, t, c = core:enable(who, s("iq", { type = "set" }), 1);
        assert(t == "modify" and c == "bad-request");
        -- The app server's answer: delivered.
        local answer = s("iq", { type = "result", id = event.push_id, from = "push.example" });
        local outcome = core:response(answer, 2.5);
        assert(outcome.handled and outcome.rtt == 0.5 and #outcome == 0);
        assert(outcome.logs[1] == "debug" and outcome.logs[2]:match("delivered to push.example"));
        assert(core:response(answer, 3) == nil, "answered once");
        return true;
    "#,
        )
        .eval()
        .unwrap();
    assert!(checked);
}

/// Out of memory in the middle of writing events (the raw writer's
/// protected call, and mlua's own allocations around it): an error for
/// that call, and the core object and the VM go on. (Prosody's state has
/// no limit; here mlua's allocator has one, set just above what is in use.)
#[test]
fn out_of_memory_while_writing_pushes_is_an_error_not_a_crash() {
    let lua = vm_with_library();
    lua.load(
        r#"
        core = cloud_notify.new("example.com", nil, stanza_mt, nil);
        core:load("romeo", nil);
        local who = { username = "romeo", host = "example.com" };
        for i = 1, 5 do
            local iq = s("iq", { type = "set" }):tag("enable", { xmlns = "urn:xmpp:push:0", jid = "push.example", node = "n" .. i }):up();
            local info, identifier = core:enable(who, iq, i);
            core:commit("romeo", core:plan_enable("romeo", identifier, info));
        end
        function message(i)
            local m = s("message", { to = "romeo@example.com", from = "juliet@example.com/b", type = "chat", id = "m" .. i })
                :tag("body"):text(("x"):rep(100)):up();
            m.last = nil;
            return m;
        end
        collectgarbage("collect");
    "#,
    )
    .exec()
    .unwrap();
    let mut failures = 0;
    for extra in [512, 2048, 8192, 32768] {
        lua.gc_collect().unwrap();
        let used = lua.used_memory();
        lua.set_memory_limit(used + extra).unwrap();
        let outcome: mlua::Result<Value> = lua
            .load("return core:offline('romeo', message(1), 1)")
            .eval();
        lua.set_memory_limit(0).unwrap();
        if let Err(e) = outcome {
            failures += 1;
            assert!(e.to_string().contains("memory"), "{e}");
        }
    }
    assert!(
        failures > 0,
        "no allocation failed: the limits are too loose"
    );
    // The object and the VM go on: a push afterwards is whole and checked.
    let ok: bool = lua
        .load(
            r#"local events = core:offline("romeo", message(2), 2);
               assert(#events == 5);
               for _, e in ipairs(events) do assert(cloud_notify.check_push(e)); end
               return true"#,
        )
        .eval()
        .unwrap();
    assert!(ok);
}

/// `core:might_push_fn()`: nil until the known users are complete, then
/// the answer `core:might_push` gives; nil for what is not a string; false
/// for a name that is not UTF-8 (no user with registrations has one); the
/// sets outlive the core object while the function is referenced.
#[test]
fn the_quick_might_push_answers_as_the_method() {
    let lua = vm_with_library();
    let checked: bool = lua
        .load(
            r#"
        local core = cloud_notify.new("example.com", {}, stanza_mt, nil);
        local quick = core:might_push_fn();
        assert(quick("romeo") == nil, "the known users are not complete yet");
        core:note_known("romeo");
        core:known_complete();
        assert(quick("romeo") == nil, "nor Push 2.0's");
        core:known2_complete();
        assert(quick("romeo") == true and core:might_push("romeo") == true);
        assert(quick("juliet") == false and core:might_push("juliet") == false);
        core:load("romeo", nil);
        assert(quick("romeo") == false and core:might_push("romeo") == false);
        assert(quick(42) == nil and quick(nil) == nil and quick({}) == nil);
        assert(quick("\255") == false and quick("rom\255eo") == false);
        core = nil;
        collectgarbage(); collectgarbage();
        assert(quick("juliet") == false, "the function keeps the sets");
        quick = nil;
        collectgarbage(); collectgarbage();
        return true
        "#,
        )
        .eval()
        .unwrap();
    assert!(checked);
}

/// An enable's registration, kept for its plan while nothing hooks
/// `cloud_notify/registration`, is the one its `push_info` reads back as
/// (publish-options, client id, language), so the plan is the same either
/// way; with a handler hooked, the table is read (a handler may change it).
#[test]
fn a_kept_enable_is_what_its_push_info_reads_back_as() {
    let lua = vm_with_library();
    let (core, info, identifier): (mlua::AnyUserData, Table, String) = lua
        .load(
            r#"
        hooked = false;
        local function get_handlers(name)
            if hooked and name == "cloud_notify/registration" then return { print }; end
        end
        local core = cloud_notify.new("example.com", nil, stanza_mt, get_handlers);
        core:load("romeo", nil);
        local iq = s("iq", { type = "set", id = "e1", ["xml:lang"] = "de" })
            :tag("enable", { xmlns = "urn:xmpp:push:0", jid = "Push.Example", node = "n1" })
            :tag("x", { xmlns = "jabber:x:data", type = "submit" })
            :tag("field", { var = "FORM_TYPE" }):tag("value"):text("http://jabber.org/protocol/pubsub#publish-options"):up():up()
            :tag("field", { var = "secret" }):tag("value"):text("s3cr3t"):up():up();
        iq.last = nil;
        local who = { username = "romeo", host = "example.com", full_jid = "romeo@example.com/phone",
            client_id = "c1", resource = "phone" };
        local info, identifier, announce = core:enable(who, iq, 1);
        assert(announce == false, "nothing hooks cloud_notify/registration");
        hooked = true;
        local _, _, announce_hooked = core:enable(who, iq, 1);
        assert(announce_hooked == true, "a handler hooks cloud_notify/registration");
        hooked = false;
        info, identifier = core:enable(who, iq, 1);
        return core, info, identifier;
    "#,
        )
        .eval()
        .unwrap();
    let kept = {
        let c = core.borrow::<super::object::Core>().unwrap();
        let kept = c.enabled.borrow().clone();
        kept
    };
    let (bare, reg) = kept.expect("kept: nothing hooks cloud_notify/registration");
    assert_eq!(bare, "romeo@example.com");
    assert!(reg.options.is_some());
    assert_eq!(
        super::records::registration_from_lua(&identifier, &info).unwrap(),
        reg
    );
    // Its plan takes it (and the slot is emptied).
    lua.globals().set("core", core.clone()).unwrap();
    lua.globals().set("info", info).unwrap();
    lua.globals().set("identifier", identifier).unwrap();
    let node: String = lua
        .load(
            r#"
        local services = core:plan_enable("romeo", identifier, info).services;
        assert(services[identifier] == info, "the record is push_info itself");
        return services[identifier].node"#,
        )
        .eval()
        .unwrap();
    assert_eq!(node, "n1");
    assert!(core
        .borrow::<super::object::Core>()
        .unwrap()
        .enabled
        .borrow()
        .is_none());
    // Hooked: nothing is kept, and a changed table is what the plan reads.
    let secret: String = lua
        .load(
            r#"
        hooked = true;
        local iq = s("iq", { type = "set", id = "e2" })
            :tag("enable", { xmlns = "urn:xmpp:push:0", jid = "push.example", node = "n2" });
        iq.last = nil;
        local info2, id2 = core:enable({ username = "romeo", host = "example.com" }, iq, 2);
        info2.encryption = "changed by a handler";
        local services = core:plan_enable("romeo", id2, info2).services;
        assert(services[id2] ~= info2, "read, and made anew");
        return services[id2].encryption;
    "#,
        )
        .eval()
        .unwrap();
    assert_eq!(secret, "changed by a handler");
}

/// The raw element reader: namespaces inherited or declared, attributes
/// (`xml:lang`, non-string keys left out), text in order; bounded in depth
/// (a table holding itself too) and in elements, and names checked.
#[test]
fn elements_are_read_raw_and_bounded() {
    let (lua, stanza, _) = vm();
    let t = build(
        &lua,
        &stanza,
        r#"s("iq", { type = "set", ["xml:lang"] = "de", [1] = "not an attribute" })
            :tag("enable", { xmlns = "urn:xmpp:push:0", jid = "push.example" })
            :tag("x", { xmlns = "jabber:x:data" }):text("a"):tag("field", { var = "v" }):up():text("b")"#,
    );
    let e = lua_to_element(&t, crate::NS_CLIENT).unwrap();
    assert!(e.is("iq", crate::NS_CLIENT));
    assert_eq!(e.attr("type"), Some("set"));
    assert_eq!(e.attrs().iter().count(), 2, "xml:lang and type");
    let enable = e.get_child("enable", "urn:xmpp:push:0").unwrap();
    assert_eq!(enable.attr("jid"), Some("push.example"));
    let x = enable.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(x.text(), "ab");
    assert!(x.get_child("field", "jabber:x:data").is_some(), "inherited");
    // (each table, and why it is refused)
    let refused = [
        (
            r#"local t = { name = "a" }; local c = t; for _ = 1, 40 do local n = { name = "a" }; c[1] = n; c = n; end; return t"#,
            "element nested too deeply",
        ),
        (
            r#"local t = { name = "a" }; t[1] = t; return t"#,
            "element nested too deeply",
        ),
        (
            r#"local t = { name = "a" }; for i = 1, 3000 do t[i] = { name = "b" }; end; return t"#,
            "too many elements",
        ),
        (r#"return { name = "a b" }"#, "invalid element name \"a b\""),
        (
            r#"return { name = "a", { attr = {} } }"#,
            "element without a name",
        ),
    ];
    for (code, why) in refused {
        let t: Table = lua.load(code).eval().unwrap();
        assert_eq!(lua_to_element(&t, "").unwrap_err(), why, "{code}");
    }
    // (the walk's room is kept from one conversion to the next: read as
    // before after the refusals, and after a tree larger than the room kept)
    let big = r#"local t = { name = "a" }; for i = 1, 300 do t[i] = { name = "b", attr = { n = tostring(i) } }; end; return t"#;
    let big: Table = lua.load(big).eval().unwrap();
    let read = lua_to_element(&big, "urn:example").unwrap();
    assert_eq!(read.children().count(), 300);
    assert_eq!(read.children().last().unwrap().attr("n"), Some("300"));
    assert_eq!(lua_to_element(&t, crate::NS_CLIENT).unwrap(), e);
}
