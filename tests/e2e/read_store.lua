-- Prints a datamanager .dat file as JSON, using Prosody's own util.json.
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath;
local json = require "util.json";
local data = dofile(arg[1]);
print(json.encode(data or json.null));
