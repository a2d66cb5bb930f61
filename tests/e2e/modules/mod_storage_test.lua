-- Test storage driver for the cloud_notify store: keyval over Prosody's
-- datamanager (the files mod_storage_internal writes), with faults a test
-- can turn on. Used as `storage = { cloud_notify = "test" }`.
--   test_storage_delay (seconds): get and set yield that long (util.async
--     sleep) when called in an async context, as a networked store does;
--     a read answers what was stored when it was asked, a write lands when
--     the delay is over.
--   <data_path>/fail-writes, <data_path>/fail-reads: while the file exists,
--     set (or get) fails.
-- (the functions under the storage API: util.datamanager itself goes through it)
local datamanager = require "core.storagemanager".olddm;
local async = require "util.async";

local delay = module:get_option_number("test_storage_delay", 0);
local data_path = prosody.paths.data;

local function exists(name)
	local f = io.open(data_path.."/"..name);
	if f then f:close(); return true; end
	return false;
end

local function pause()
	if delay <= 0 or not async.ready() then return; end
	local wait, done = async.waiter();
	module:add_timer(delay, function() done(); end);
	wait();
end

local keyval = {};
keyval.__index = keyval;

function keyval:get(user)
	if exists("fail-reads") then return nil, "injected read failure"; end
	local data, err = datamanager.load(user, module.host, self.store);
	pause();
	return data, err;
end

function keyval:set(user, data)
	pause();
	if exists("fail-writes") then return nil, "injected write failure"; end
	return datamanager.store(user, module.host, self.store, data);
end

function keyval:users()
	return datamanager.users(module.host, self.store, "dat");
end

local driver = {};
-- luacheck: ignore 212/self

function driver:open(store, typ)
	if typ and typ ~= "keyval" then return nil, "unsupported-store"; end
	return setmetatable({ store = store }, keyval);
end

function driver:purge(user)
	return datamanager.purge(user, module.host);
end

module:provides("storage", driver);
